"""A small asyncio pool of psycopg connections, for the hot webhook path.

The ORM path (`models.transaction`) is synchronous: called from an event loop it blocks
every other request for the whole transaction, and run in a thread pool it pays the ORM's
unit of work and a thread hop per request. The provider webhook does a fixed, small amount
of SQL, so it uses psycopg's native asyncio connections instead, through this pool.

`transaction()` is this path's one place that owns the transaction: it commits on success,
rolls back on error, and runs after-commit hooks only once the commit succeeded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import DictRow, dict_row
from sqlalchemy.engine import make_url

CONNECT_TIMEOUT_S = 3
"""libpq `connect_timeout`, seconds: how long a request waits for PostgreSQL to accept a
new connection before it answers 503."""

AsyncConnection = psycopg.AsyncConnection[DictRow]


def libpq_url(database_url: str) -> str:
    """`postgresql+psycopg://...` (SQLAlchemy) as a libpq connection URI."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncPool:
    """At most `size` connections to one database, reused LIFO, opened on demand.

    A connection that failed (or whose transaction failed) is closed rather than reused.
    Bound to the event loop that first uses it.
    """

    def __init__(self, database_url: str, size: int) -> None:
        self.conninfo = libpq_url(database_url)
        self.size = size
        self._idle: list[AsyncConnection] = []
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S
        )

    @asynccontextmanager
    async def transaction(
        self, after_commit: list[Callable[[], object]]
    ) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction: commit on success, roll back on error.

        `after_commit` hooks run once the commit has succeeded (after the connection is
        back in the pool).

        Raises:
            psycopg.OperationalError: PostgreSQL is unreachable or the connection broke;
                the transaction did not commit.
        """
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
                await conn.commit()
            except BaseException:
                if conn.broken or conn.closed:
                    await conn.close()
                else:
                    try:
                        await conn.rollback()
                    except psycopg.Error:
                        await conn.close()
                if not conn.closed:
                    self._idle.append(conn)
                raise
            self._idle.append(conn)
        for hook in after_commit:
            hook()

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()
