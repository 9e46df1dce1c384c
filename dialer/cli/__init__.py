"""The `dialer` command line (typer): one module per command group.

`db` (schema), `campaigns`, `calls`, `schedules`, `dnc`, `accounts`, `keys`, `numbers`,
`webhooks`, and the long-running
parts at the top level (`simulator`, `api`, `flower`, `demo`, from `dialer.cli.serve`).
Every command that touches data acts on the account named by `--account` (default
`default`); only `dialer accounts create` makes an account, any other command given an
unknown one fails with `account_not_found`. A failing command prints
`error: <code>: <message>` on stderr and exits non-zero (`dialer.cli.common`).
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from dialer.cli import (
    accounts,
    calls,
    campaigns,
    db,
    dnc,
    keys,
    numbers,
    schedules,
    serve,
    webhooks,
)
from dialer.logs import configure_logging
from dialer.settings import get_settings

app = typer.Typer(help="Outbound-call campaign dialer.", no_args_is_help=True)
app.add_typer(db.app, name="db")
app.add_typer(campaigns.app, name="campaigns")
app.add_typer(dnc.app, name="dnc")
app.add_typer(accounts.app, name="accounts")
app.add_typer(schedules.app, name="schedules")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(keys.app, name="keys")
app.add_typer(numbers.app, name="numbers")
app.add_typer(calls.app, name="calls")
app.add_typer(serve.app)


def main() -> None:
    """Console-script entry point. Logging (`dialer.logs`) at `LOG_LEVEL` when it is set,
    else WARNING: a command's own output is what it prints, library chatter is not."""
    try:
        settings = get_settings()
    except ValidationError as error:  # a placeholder secret, a malformed URL
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        sys.stderr.write(f"error: invalid_settings: {problems}\n")
        sys.exit(1)
    configure_logging(settings, None if "log_level" in settings.model_fields_set else "WARNING")
    app()
