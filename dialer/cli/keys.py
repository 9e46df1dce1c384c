"""`dialer keys`: an account's named API keys for the HTTP API (`Authorization: Bearer`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from campaigns.accounts import create_api_key, get_account, list_api_keys, revoke_api_key
from dialer.cli.common import JsonOpt, console, errors_reported, print_json
from dialer.settings import get_settings
from models import Account, transaction

app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)


@app.command("create")
def create(
    account: Annotated[str, typer.Option("--account", help="Account name.")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    as_json: JsonOpt = False,
) -> None:
    """Issue a new key and print it once (`dk_...`; only its hash is kept)."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        issued = create_api_key(session, get_account(session, account), name)
    if as_json:
        print_json({"id": issued.id, "name": issued.name, "key": issued.key})
        return
    sys.stdout.write(issued.key + "\n")


@app.command("list")
def list_(
    account: Annotated[str | None, typer.Option("--account", help="Only this account's.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List keys (never the keys themselves): id, account, name, prefix, dates."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        owner = None if account is None else get_account(session, account).id
        names = {account.id: account.name for account in session.scalars(select(Account))}
        rows = [
            {
                "id": key.id,
                "account": names[key.account_id],
                "name": key.name,
                "prefix": key.prefix,
                "created_at": key.created_at,
                "last_used_at": key.last_used_at,
                "revoked_at": key.revoked_at,
            }
            for key in list_api_keys(session, owner)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "account", "name", "prefix", "created", "last used", "revoked")
    for row in rows:
        table.add_row(*(str(value or "") for value in row.values()))
    console.print(table)


@app.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(help="Key id (keys list).")]) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        key = revoke_api_key(session, key_id)
        name = key.name
    console.print(f"key {key_id} ({name}) revoked")
