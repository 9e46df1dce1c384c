"""Asyncio PostgreSQL connections for the hot webhook path (psycopg_pool).

The ORM path (`models.transaction`) is synchronous: called from an event loop it blocks
every other request for the whole transaction, and run in a thread pool it pays the ORM's
unit of work and a thread hop per request. The provider webhook does a fixed, small amount
of SQL, so it uses psycopg's native asyncio connections from a `psycopg_pool` pool.

`transaction()` is this path's one place that owns the transaction: it commits on success,
rolls back on error, and runs after-commit hooks only once the commit succeeded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from models.db import connect_options, run_after_commit

CONNECT_TIMEOUT_S = 2
"""Seconds a request waits for a connection (libpq `connect_timeout`, and the pool's wait)
before it fails with `psycopg.OperationalError` and the webhook answers 503."""

AsyncConnection = psycopg.AsyncConnection[DictRow]
AsyncPool = AsyncConnectionPool[AsyncConnection]


def libpq_url(database_url: str) -> str:
    """`postgresql+psycopg://...` (SQLAlchemy) as a libpq connection URI (without psycopg's
    own `prepare_threshold`, see `models.db.connect_options`)."""
    target, _ = connect_options(database_url)
    return target.set(drivername="postgresql").render_as_string(hide_password=False)


def async_pool(database_url: str, size: int) -> AsyncPool:
    """A pool of at most `size` connections, opened on first use (in the serving loop)."""
    return AsyncConnectionPool(
        libpq_url(database_url),
        connection_class=psycopg.AsyncConnection[DictRow],
        kwargs={
            "row_factory": dict_row,
            "connect_timeout": CONNECT_TIMEOUT_S,
            **connect_options(database_url)[1],
        },
        min_size=1,
        max_size=size,
        timeout=CONNECT_TIMEOUT_S,
        open=False,
    )


@asynccontextmanager
async def transaction(
    pool: AsyncPool, after_commit: list[Callable[[], object]]
) -> AsyncIterator[AsyncConnection]:
    """A pooled connection inside a transaction: committed on success, rolled back on
    error; `after_commit` hooks run once the commit has succeeded, and one that raises is
    logged, not raised (`models.db.run_after_commit`).

    Raises:
        psycopg.OperationalError: PostgreSQL is unreachable (`psycopg_pool.PoolTimeout` is
            one) or the connection broke; the transaction did not commit.
    """
    if pool.closed:
        await pool.open(wait=False)
    async with pool.connection() as conn:
        yield conn
    run_after_commit(after_commit)
