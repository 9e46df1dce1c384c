"""`dialer dnc`: the account's do-not-call list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from campaigns import dnc
from dialer.cli.common import AccountOpt, JsonOpt, account_id, console, errors_reported, print_json
from dialer.settings import get_settings
from models import transaction

app = typer.Typer(help="The account's do-not-call list.", no_args_is_help=True)

RegionOpt = Annotated[str, typer.Option(help="Region for national numbers.")]


@app.command("add")
def add(
    numbers: Annotated[list[str], typer.Argument(help="Numbers to block.")],
    default_region: RegionOpt = "US",
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    account: AccountOpt = "default",
) -> None:
    """Add numbers to the do-not-call list."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        added = dnc.add(session, account_id(account), numbers, default_region, reason=reason)
    console.print(f"{added} added")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV with a phone column.", exists=True)],
    default_region: RegionOpt = "US",
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Import a CSV of numbers into the do-not-call list."""
    with (
        errors_reported(),
        file.open("rb") as source,
        transaction(get_settings().database_url) as session,
    ):
        summary = dnc.import_csv(session, account_id(account), source, default_region)
    if as_json:
        print_json(summary.to_json())
    else:
        console.print(summary.to_json())
