"""`dialer numbers`: the account's caller IDs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from campaigns.accounts import list_numbers, number_json, remove_number, save_number
from dialer.cli.common import AccountOpt, JsonOpt, account_id, console, errors_reported, print_json
from dialer.runtime import get_runtime
from models import transaction

app = typer.Typer(help="Caller IDs: the numbers calls are made from.", no_args_is_help=True)

NumberArg = Annotated[str, typer.Argument(help="Phone number, E.164 (+14155550100).")]


@app.command("add")
def add(
    number: NumberArg,
    account: AccountOpt = "default",
    outbound: Annotated[
        bool, typer.Option("--outbound/--no-outbound", help="Present it on outbound calls.")
    ] = True,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", help="Most live calls presenting it.")
    ] = None,
) -> None:
    """Add a caller ID the provider account owns or verified, or change its settings."""
    runtime = get_runtime()
    with errors_reported(), transaction(runtime.settings.database_url) as session:
        caller_id, created = save_number(
            session,
            account_id(account),
            number,
            outbound=outbound,
            max_concurrency=max_concurrency,
            provider=runtime.provider,
        )
        e164 = caller_id.e164
    console.print(f"{e164} {'added' if created else 'updated'}")


@app.command("list")
def list_(account: AccountOpt = "default", as_json: JsonOpt = False) -> None:
    """List the account's caller IDs, in the order they were added (the first outbound
    one is the default)."""
    with errors_reported(), transaction(get_runtime().settings.database_url) as session:
        rows = [number_json(n) for n in list_numbers(session, account_id(account)).items]
    if as_json:
        print_json(rows)
        return
    table = Table("number", "outbound", "max concurrency", "added")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)


@app.command("remove")
def remove(number: NumberArg, account: AccountOpt = "default") -> None:
    """Remove a caller ID no campaign uses (else: `numbers add NUMBER --no-outbound`)."""
    with errors_reported(), transaction(get_runtime().settings.database_url) as session:
        remove_number(session, account_id(account), number)
    console.print("removed")
