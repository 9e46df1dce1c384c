"""`dialer numbers`: the account's caller IDs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from campaigns.accounts import KEEP, list_numbers, number_json, remove_number, save_number
from dialer.cli.common import (
    AccountOpt,
    JsonOpt,
    account_id,
    cli_actor,
    console,
    errors_reported,
    print_json,
)
from dialer.errors import InvalidOptionError
from dialer.runtime import get_runtime
from models import transaction

app = typer.Typer(help="Caller IDs: the numbers calls are made from.", no_args_is_help=True)

NumberArg = Annotated[str, typer.Argument(help="Phone number, E.164 (+14155550100).")]


@app.command("add")
def add(
    number: NumberArg,
    account: AccountOpt = "default",
    outbound: Annotated[
        bool | None,
        typer.Option(
            "--outbound/--no-outbound",
            help="Present it on outbound calls (not given: unchanged; a new number: yes). "
            "--no-outbound pauses the running campaigns that present it.",
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency", help="Most live calls presenting it (not given: unchanged)."
        ),
    ] = None,
    no_max_concurrency: Annotated[
        bool, typer.Option("--no-max-concurrency", help="Clear its cap on live calls.")
    ] = False,
) -> None:
    """Add a caller ID the provider account owns or verified and no other account has, or
    change the settings given of one the account has (the others keep theirs)."""
    runtime = get_runtime()
    cap: int | None = max_concurrency
    with errors_reported(), transaction(runtime.settings.database_url) as session:
        if no_max_concurrency and max_concurrency is not None:
            raise InvalidOptionError(
                "give --max-concurrency or --no-max-concurrency, not both",
                [{"field": "max_concurrency", "message": "given twice"}],
            )
        caller_id, created = save_number(
            session,
            account_id(account),
            number,
            outbound=KEEP if outbound is None else outbound,
            max_concurrency=None if no_max_concurrency else KEEP if cap is None else cap,
            provider=runtime.provider,
            actor=cli_actor(),
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
