"""Engines, sessions and the one place that owns a transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache

import structlog
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

log = structlog.get_logger(__name__)

PREPARE_THRESHOLD = "prepare_threshold"
"""A query parameter of a database URL that is psycopg's, not libpq's: `none` turns its
automatic prepared statements off (for PgBouncer in transaction mode, where the next
transaction may run on a server connection that never saw the statement), a number sets
after how many runs a statement is prepared (psycopg's default: 5)."""


def connect_options(url: str) -> tuple[URL, dict[str, int | None]]:
    """Split `url` into the URL libpq reads and psycopg's own connect arguments.

    Returns:
        The URL without `prepare_threshold`, and `{"prepare_threshold": None | int}` when
        the URL named it (else `{}`).

    Raises:
        ValueError: `prepare_threshold` is neither `none` nor a whole number.
    """
    parsed = make_url(url)
    value = parsed.query.get(PREPARE_THRESHOLD)
    if value is None:
        return parsed, {}
    text_value = value if isinstance(value, str) else value[-1]
    if text_value.lower() == "none":
        threshold = None
    elif text_value.isdigit():
        threshold = int(text_value)
    else:
        raise ValueError(f"{PREPARE_THRESHOLD}={text_value!r}: expected none or a number")
    return parsed.difference_update_query([PREPARE_THRESHOLD]), {PREPARE_THRESHOLD: threshold}


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """A pooled engine for `url` (one per URL per process), `prepare_threshold` applied
    (`connect_options`)."""
    target, options = connect_options(url)
    return create_engine(
        target, connect_args=options, pool_pre_ping=True, pool_size=10, max_overflow=20
    )


@lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    """Sessions bound to `url`; objects stay readable after commit."""
    return sessionmaker(engine_for(url), expire_on_commit=False)


@contextmanager
def transaction(
    url: str, after_commit: list[Callable[[], object]] | None = None
) -> Iterator[Session]:
    """Open a session, commit on success, roll back on error, always close.

    `after_commit` callbacks (e.g. enqueueing a Celery task) run only once the commit has
    succeeded, so no worker looks for a row that is not there yet. Service code never commits.

    A hook that raises is logged (`after_commit_hook_failed`) and the next one still runs:
    the work is committed, so its caller must not be told it failed (an HTTP 5xx for a call
    that was queued invites a retry that queues it twice). What a hook does is therefore
    only ever a nudge that something else repairs when it is lost (a pacer kick: the beat's
    `kick_pacers`; a webhook delivery: the outbox sweep; a lease: the reconciler).
    """
    hooks: list[Callable[[], object]] = [] if after_commit is None else after_commit
    session = session_factory(url)()
    session.info["after_commit"] = hooks
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    run_after_commit(hooks)


def run_after_commit(hooks: list[Callable[[], object]]) -> None:
    """Run each hook of a committed transaction; one that raises is logged
    (`after_commit_hook_failed`), never raised: see `transaction`."""
    for hook in hooks:
        try:
            hook()
        except Exception as error:  # the work is committed: see `transaction`
            log.error("after_commit_hook_failed", hook=repr(hook), error=repr(error))


def relax_durability(session: Session) -> None:
    """Let this transaction's commit return before its WAL record reaches disk
    (`SET LOCAL synchronous_commit = off`, PostgreSQL manual 19.5.1).

    Only for writes whose loss in a database crash is repaired by design (a call sid that a
    lookup re-finds, attempts whose contacts are still pending); never for anything that
    must not be done twice, nor for an event the provider will not send again.
    """
    session.execute(text("SET LOCAL synchronous_commit = off"))


def on_commit(session: Session, hook: Callable[[], object]) -> None:
    """Run `hook` after the session opened by `transaction` commits."""
    session.info["after_commit"].append(hook)


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist; True if it was created.

    Connects to the server's `postgres` database to do so (needs CREATEDB).
    """
    target, options = connect_options(url)
    admin = create_engine(
        target.set(database="postgres"), connect_args=options, isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            ).scalar()
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
            return True
    finally:
        admin.dispose()
