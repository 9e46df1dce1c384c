"""`dialer db`: the database schema."""

from __future__ import annotations

import typer

from dialer.cli.common import console
from dialer.settings import get_settings

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Create the database if it does not exist and apply every migration (through
    `DATABASE_DIRECT_URL` when set: a migration sets session parameters that a pooler in
    transaction mode would not keep)."""
    from models.migrate import upgrade as migrate

    created = migrate(get_settings().migration_url)
    console.print("database created and migrated" if created else "database migrated")
