"""Alembic environment: online migrations with lock and statement timeouts, so a migration
waiting on a busy table fails fast instead of queueing every query behind it.

The timeouts are session parameters (`SET`), and the migration runs in one transaction on
one connection: it needs a direct connection to PostgreSQL, not a pooler in transaction
mode (`dialer db upgrade` uses `DATABASE_DIRECT_URL` when set). A URL's `prepare_threshold`
is applied as the dialer's engines apply it (`models.db.connect_options`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from models.base import Base
from models.db import connect_options
from models.tables import Account  # noqa: F401  # registers every table on Base.metadata

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    target, options = connect_options(config.get_main_option("sqlalchemy.url") or "")
    engine = create_engine(target, connect_args=options, poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SET lock_timeout = '4s'"))
        connection.execute(text("SET statement_timeout = '60s'"))
        connection.commit()
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
