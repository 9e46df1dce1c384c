"""Benchmarks: each prints figures, not pass/fail (see README, Benchmarks)."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def scratch_database(server: str, database: str) -> str:
    """Drop and create the scratch database `database` on `server` (a SQLAlchemy URL
    without a database), migrate it; returns its URL."""
    from models.migrate import upgrade

    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()
    url = f"{server}/{database}"
    upgrade(url)
    return url
