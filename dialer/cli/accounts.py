"""`dialer accounts`: accounts and their API keys."""

from __future__ import annotations

import secrets
import sys

import typer

from campaigns.accounts import get_or_create_account, hash_api_key
from dialer.cli.common import AccountOpt
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
