"""What every command group shares: the consoles, the error line, the account, JSON output
and the common options."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from campaigns.accounts import get_account
from dialer.errors import DialerError
from dialer.settings import get_settings
from models import transaction

console = Console()
err_console = Console(stderr=True)

AccountOpt = Annotated[str, typer.Option("--account", help="Account name.")]
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
    """The id of account `name`. Raises `NotFoundError` (`account_not_found`): only
    `dialer accounts create` makes accounts."""
    with transaction(get_settings().database_url) as session:
        return get_account(session, name).id


def cli_actor() -> str:
    """Who a command acts as in the history: `cli:<the OS user>`."""
    return f"cli:{getpass.getuser()}"


def print_json(value: Any) -> None:
    """`value` as one JSON line on stdout."""
    sys.stdout.write(json.dumps(value, default=str) + "\n")
