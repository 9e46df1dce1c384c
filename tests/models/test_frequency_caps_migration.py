"""Migration 0023: an account's per-day cap becomes the 1-day limit of its rolling frequency
caps, and comes back on downgrade."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from models import engine_for
from models.migrate import alembic_config, upgrade


def test_the_daily_cap_becomes_a_one_day_limit_and_back(database_url: str) -> None:
    url = f"{database_url}_frequency_caps"
    admin = create_engine(
        database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        upgrade(url, "0021")
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (name, max_concurrency, cps, "
                    "max_calls_per_number_per_day) VALUES ('clinic', 10, 1, 2)"
                )
            )
        upgrade(url, "0023")
        with engine.begin() as conn:
            caps = conn.execute(text("SELECT frequency_caps FROM accounts")).scalar_one()
            assert caps == [{"calls": 2, "days": 1}]
            conn.execute(
                text(
                    "UPDATE accounts SET frequency_caps = "
                    """'[{"calls": 1, "days": 1}, {"calls": 3, "days": 30}]'"""
                )
            )
        command.downgrade(alembic_config(url), "0021")
        with engine.begin() as conn:
            daily = conn.execute(
                text("SELECT max_calls_per_number_per_day FROM accounts")
            ).scalar_one()
            assert daily == 1
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()
