"""The `dialer` command line (typer): one module per command group.

`db` (schema), `campaigns`, `calls`, `dnc`, `accounts`, `keys`, `numbers`, and the long-running
parts at the top level (`simulator`, `api`, `flower`, `demo`, from `dialer.cli.serve`).
Every command that touches data acts on the account named by `--account` (default
`default`); only `dialer accounts create` makes an account, any other command given an
unknown one fails with `account_not_found`. A failing command prints
`error: <code>: <message>` on stderr and exits non-zero (`dialer.cli.common`).
"""

from __future__ import annotations

import typer

from dialer.cli import accounts, calls, campaigns, db, dnc, keys, numbers, serve

app = typer.Typer(help="Outbound-call campaign dialer.", no_args_is_help=True)
app.add_typer(db.app, name="db")
app.add_typer(campaigns.app, name="campaigns")
app.add_typer(dnc.app, name="dnc")
app.add_typer(accounts.app, name="accounts")
app.add_typer(keys.app, name="keys")
app.add_typer(numbers.app, name="numbers")
app.add_typer(calls.app, name="calls")
app.add_typer(serve.app)


def main() -> None:
    """Console-script entry point."""
    app()
