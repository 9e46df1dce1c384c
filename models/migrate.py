"""Apply the Alembic migrations programmatically (`dialer db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from models.db import ensure_database

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config for `url` whose scripts live in `models/migrations`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option(
        "file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(slug)s"
    )
    return config


def upgrade(url: str, revision: str = "head") -> bool:
    """Create the database if missing, then migrate it to `revision`.

    Returns:
        True if the database was created by this call.
    """
    created = ensure_database(url)
    command.upgrade(alembic_config(url), revision)
    return created
