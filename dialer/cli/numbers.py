"""`dialer numbers`: the account's caller IDs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from campaigns.accounts import KEEP, Keep, list_numbers, number_json, remove_number, save_number
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
    max_calls_per_minute: Annotated[
        int | None,
        typer.Option(
            "--max-calls-per-minute",
            help="Most calls presenting it in any minute (not given: unchanged; a new number: 10).",
        ),
    ] = None,
    no_max_calls_per_minute: Annotated[
        bool, typer.Option("--no-max-calls-per-minute", help="Lift its minute's limit.")
    ] = False,
    max_calls_per_day: Annotated[
        int | None,
        typer.Option(
            "--max-calls-per-day",
            help="Most calls presenting it in any 24 hours (not given: unchanged; a new "
            "number: 100).",
        ),
    ] = None,
    no_max_calls_per_day: Annotated[
        bool, typer.Option("--no-max-calls-per-day", help="Lift its day's limit.")
    ] = False,
    rested: Annotated[
        bool | None,
        typer.Option(
            "--rest/--unrest",
            help="Take it out of caller-ID selection, or put a rested number back in use.",
        ),
    ] = None,
) -> None:
    """Add a caller ID the provider account owns or verified and no other account has, or
    change the settings given of one the account has (the others keep theirs)."""
    runtime = get_runtime()
    with errors_reported(), transaction(runtime.settings.database_url) as session:
        caller_id, created = save_number(
            session,
            account_id(account),
            number,
            outbound=KEEP if outbound is None else outbound,
            max_concurrency=_setting("max_concurrency", max_concurrency, no_max_concurrency),
            max_calls_per_minute=_setting(
                "max_calls_per_minute", max_calls_per_minute, no_max_calls_per_minute
            ),
            max_calls_per_day=_setting(
                "max_calls_per_day", max_calls_per_day, no_max_calls_per_day
            ),
            rested=KEEP if rested is None else rested,
            provider=runtime.provider,
            actor=cli_actor(),
        )
        e164 = caller_id.e164
    console.print(f"{e164} {'added' if created else 'updated'}")


def _setting(field: str, value: int | None, cleared: bool) -> int | Keep | None:
    """A cap or limit as `save_number` takes it: `value`, None when `--no-...` clears it,
    `KEEP` when neither is given.

    Raises:
        InvalidOptionError: `invalid_option`, both given.
    """
    if cleared and value is not None:
        flag = field.replace("_", "-")
        raise InvalidOptionError(
            f"give --{flag} or --no-{flag}, not both",
            [{"field": field, "message": "given twice"}],
        )
    return None if cleared else KEEP if value is None else value


@app.command("list")
def list_(account: AccountOpt = "default", as_json: JsonOpt = False) -> None:
    """List the account's caller IDs, in the order they were added (the first outbound
    one is the default)."""
    with errors_reported(), transaction(get_runtime().settings.database_url) as session:
        rows = [number_json(n) for n in list_numbers(session, account_id(account)).items]
    if as_json:
        print_json(rows)
        return
    table = Table("number", "outbound", "max concurrency", "a minute", "a day", "rested", "added")
    for row in rows:
        rested = f"since {row['rested_at']}: {row['rested_reason']}" if row["rested_at"] else ""
        limits = ("number", "outbound", "max_concurrency", "max_calls_per_minute")
        shown = [str(row[k]) for k in (*limits, "max_calls_per_day")]
        table.add_row(*shown, rested, str(row["created_at"]))
    console.print(table)


@app.command("remove")
def remove(number: NumberArg, account: AccountOpt = "default") -> None:
    """Remove a caller ID no campaign uses (else: `numbers add NUMBER --no-outbound`)."""
    with errors_reported(), transaction(get_runtime().settings.database_url) as session:
        remove_number(session, account_id(account), number)
    console.print("removed")
