"""Shared fixtures: a fresh PostgreSQL database and Redis database per test process.

Each pytest-xdist worker gets its own database `dialer_test_<worker>` (dropped and
migrated at the start of the run) and its own Redis logical database, so workers never see
each other's rows, leases or queues. The URLs are exported to the environment so the
processes the tests start (Celery workers, the API) use the same ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from dialer.runtime import Runtime

PG_SERVER = os.environ.get("TEST_PG_SERVER", "postgresql+psycopg://root@127.0.0.1:5432")
REDIS_SERVER = os.environ.get("TEST_REDIS_SERVER", "redis://127.0.0.1:6379")


def _worker_index() -> int:
    # TEST_WORKER_OFFSET lets two test runs share a machine without sharing databases.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0) + int(os.environ.get("TEST_WORKER_OFFSET", "0"))


_INDEX = _worker_index()
DATABASE_URL = f"{PG_SERVER}/dialer_test_{_INDEX}"
REDIS_URL = f"{REDIS_SERVER}/{1 + _INDEX}"
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ["REDIS_URL"] = REDIS_URL
# Each test process is the root of its own metrics tree (`dialer.metrics`), and the workers
# the tests start serve no metrics unless a test gives one a free port.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
os.environ["WORKER_METRICS_PORT"] = "0"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A freshly created and migrated database for this test process."""
    from models.migrate import upgrade

    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "dialer_test_{_INDEX}" WITH (FORCE)'))
    admin.dispose()
    upgrade(DATABASE_URL)
    yield DATABASE_URL


@pytest.fixture
def db_session(database_url: str) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test.

    Code under test may commit: commits become savepoints of the outer transaction.
    """
    from models import engine_for

    connection = engine_for(database_url).connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """This test process's Redis database, emptied before and after the test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def committed_db(database_url: str) -> Iterator[str]:
    """For code that opens its own transactions: the URL, and every table emptied after."""
    from models import Base, engine_for

    yield database_url
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine_for(database_url).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def runtime_settings() -> dict[str, Any]:
    """`Settings` fields the `runtime` fixture sets beyond the test databases and `data_dir`.

    A module overrides this fixture to point the runtime at a simulator, a public URL, ...
    """
    return {}


@pytest.fixture
def runtime(
    committed_db: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    runtime_settings: dict[str, Any],
) -> Runtime:
    """A runtime on this process's committed database and emptied Redis database."""
    from dialer.runtime import Runtime
    from dialer.settings import Settings

    settings = Settings(
        **{
            "database_url": committed_db,
            "redis_url": REDIS_URL,
            "data_dir": tmp_path,
            **runtime_settings,
        }
    )
    return Runtime(settings)
