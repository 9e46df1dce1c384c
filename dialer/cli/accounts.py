"""`dialer accounts`: accounts and their API keys."""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import typer

from campaigns.accounts import get_or_create_account, hash_api_key
from campaigns.webhooks import webhook_secret
from dialer.cli.common import AccountOpt, JsonOpt, errors_reported, print_json
from dialer.settings import get_settings
from models import transaction

app = typer.Typer(help="Accounts and API keys.", no_args_is_help=True)


@app.command("create-key")
def create_key(account: AccountOpt = "default") -> None:
    """Issue a new API key for the account (replaces the old one) and print it once."""
    key = secrets.token_urlsafe(32)
    with transaction(get_settings().database_url) as session:
        get_or_create_account(session, account).api_key_hash = hash_api_key(key)
    sys.stdout.write(key + "\n")


@app.command("webhook-secret")
def webhook_secret_command(
    name: Annotated[str, typer.Argument(help="Account name.")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Make a new one; the old one signs for 24 h more.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the secret the account's webhooks are signed with (`{"secret"}` with --json)."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        secret = webhook_secret(session, name, rotate=rotate)
    if as_json:
        print_json({"secret": secret})
    else:
        sys.stdout.write(secret + "\n")
