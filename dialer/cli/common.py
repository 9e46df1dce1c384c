"""What every command group shares: the consoles, the error line, the account, JSON output
and the common options."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from enum import Enum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from campaigns.accounts import get_account
from dialer.errors import DialerError, NotFoundError
from dialer.settings import get_settings
from models import transaction

console = Console()
err_console = Console(stderr=True)

AccountOpt = Annotated[
    str,
    typer.Option(
        "--account", envvar="DIALER_ACCOUNT", help="Account name (default: $DIALER_ACCOUNT)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CampaignArg = Annotated[int, typer.Argument(help="Campaign id.")]


def fail(code: str, message: str) -> NoReturn:
    """Print `error: <code>: <message>` on stderr and exit 1."""
    err_console.print(f"error: {code}: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def errors_reported() -> Iterator[None]:
    """Turn the product's coded errors (`dialer.errors.DialerError` and its tree) into the
    CLI's error line and exit status."""
    try:
        yield
    except DialerError as error:
        fail(error.code, error.message)


def account_id(name: str) -> int:
    """The id of account `name` (from `--account`, else `DIALER_ACCOUNT`, else `default`).
    An unknown one fails with `account_not_found` and says how to make it or name another:
    only `dialer accounts create` makes accounts."""
    try:
        with transaction(get_settings().database_url) as session:
            return get_account(session, name).id
    except NotFoundError as error:
        if error.code != "account_not_found":
            raise
        fail(
            error.code,
            f"{error.message}: create it with `dialer accounts create {name}`, or name"
            " another with --account NAME or the DIALER_ACCOUNT environment variable",
        )


def cli_actor() -> str:
    """Who a command acts as in the history: `cli:<the OS user>`."""
    return f"cli:{getpass.getuser()}"


def plain(value: Any) -> str:
    """`value` as JSON has it: a time in ISO 8601 (`2026-12-07T21:56:24.5+00:00`), an enum
    as its value, anything else JSON cannot carry as its text. The one encoder of the CLI's
    JSON (`print_json`) and of plain values it prints (`accounts show`)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def print_json(value: Any) -> None:
    """`value` as one JSON line on stdout, times in ISO 8601 (`plain`)."""
    sys.stdout.write(json.dumps(value, default=plain) + "\n")
