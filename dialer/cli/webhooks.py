"""`dialer webhooks`: the account's webhook deliveries, and sending one again."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from campaigns.webhooks import delivery_view, list_deliveries, retry_delivery
from dialer.cli.common import (
    AccountOpt,
    JsonOpt,
    account_id,
    console,
    errors_reported,
    plain,
    print_json,
)
from dialer.settings import get_settings
from models import WebhookStatus, transaction

app = typer.Typer(help="Webhook deliveries to the account's URL.", no_args_is_help=True)


@app.command("list")
def list_command(
    account: AccountOpt = "default",
    status: Annotated[
        WebhookStatus | None, typer.Option(help="Only deliveries in this status.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first (1-1000).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The account's webhook deliveries, newest first (`--json`: one JSON list)."""
    owner = account_id(account)
    with errors_reported(), transaction(get_settings().database_url) as session:
        page = list_deliveries(session, owner, status=status, limit=limit)
        views = [delivery_view(event) for event in page.items]
    if as_json:
        print_json(views)
        return
    table = Table(title=f"webhook deliveries of {account}")
    # `webhooks retry` takes the id: never cut it; the other columns wrap instead.
    table.add_column("id", no_wrap=True, min_width=max((len(v["id"]) for v in views), default=2))
    for column in ("type", "status", "attempts", "last", "created"):
        table.add_column(column)
    for view in views:
        last = view["last_error"] or (view["last_status_code"] and str(view["last_status_code"]))
        table.add_row(
            view["id"],
            view["type"],
            view["status"],
            str(view["attempts"]),
            last or "",
            plain(view["created_at"]),
        )
    console.print(table)


@app.command("retry")
def retry_command(
    delivery_id: Annotated[str, typer.Argument(metavar="ID", help="The delivery's id (evt_...).")],
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Send a delivery once more now (a failed or dead-lettered one, or any other)."""
    owner = account_id(account)
    with errors_reported(), transaction(get_settings().database_url) as session:
        view = delivery_view(retry_delivery(session, owner, delivery_id))
    if as_json:
        print_json(view)
    else:
        console.print(f"delivery {view['id']} queued again")
