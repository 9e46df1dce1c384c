"""The settings that separate the parts: the broker, Redis through Sentinel, retries that
are logged and counted, PostgreSQL without prepared statements and a direct URL for
migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from pydantic import ValidationError
from sqlalchemy import text

from dialer.cli.devstack import free_port
from dialer.metrics import REDIS_RETRIES
from dialer.runtime import redis_client
from dialer.settings import Settings
from models.asyncdb import libpq_url
from models.db import engine_for
from tests.conftest import DATABASE_URL
from tests.distributed.failover_support import MASTER_NAME, redis_group
from tests.support import captured_logs
from workers.app import broker, create_app


def _retries(error: str, outcome: str) -> float:
    return float(REDIS_RETRIES.labels(error, outcome)._value.get())


def test_sentinels_are_read_as_host_port_pairs() -> None:
    settings = Settings(redis_sentinels="10.0.0.1:26379, sentinel-b:26380,[::1]:26381")
    assert settings.sentinels == [("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381)]
    assert Settings().sentinels == []
    for bad in ("10.0.0.1", "host:port", "host:70000", ":26379"):
        with pytest.raises(ValidationError, match="not host:port"):
            Settings(redis_sentinels=bad)


def test_the_broker_is_redis_url_unless_named() -> None:
    default = Settings(redis_url="redis://:pw@10.0.0.5:6379/4")
    url, options = broker(default)
    assert url == "redis://:pw@10.0.0.5:6379/4"
    assert options["ack_emulation"] is False
    assert options["socket_timeout"] == default.redis_socket_timeout_s
    rabbit = Settings(celery_broker_url="amqp://u:p@mq:5672/dialer")
    assert broker(rabbit) == ("amqp://u:p@mq:5672/dialer", {"confirm_publish": True})
    with pytest.raises(ValidationError, match="CELERY_BROKER_URL must start with"):
        Settings(celery_broker_url="kafka://mq:9092")


def test_with_sentinels_the_redis_broker_asks_them_keeping_db_and_password() -> None:
    settings = Settings(
        redis_url="redis://:s3cret@ignored:6379/4",
        redis_sentinels="s1:26379,s2:26379",
        redis_sentinel_master="main",
    )
    url, options = broker(settings)
    assert url == "sentinel://:s3cret@s1:26379/4;sentinel://:s3cret@s2:26379/4"
    assert options["master_name"] == "main"
    # A broker named on its own is used as it is.
    named = settings.model_copy(update={"celery_broker_url": "redis://q:6379/0"})
    assert broker(named)[0] == "redis://q:6379/0"


def test_on_rabbitmq_every_queue_is_a_quorum_queue() -> None:
    app = create_app(Settings(celery_broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    queues = app.conf.task_queues
    assert {q.name for q in queues} == {"dials", "pacer", "maintenance", "webhooks"}
    assert all(q.queue_arguments == {"x-queue-type": "quorum"} for q in queues)
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    on_redis = create_app(Settings())
    assert all(q.queue_arguments is None for q in on_redis.conf.task_queues)


def test_a_redis_that_does_not_answer_is_retried_logged_and_counted() -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_retries=2)
    client = redis_client(settings)
    retried, gave_up = (
        _retries("ConnectionError", "retried"),
        _retries("ConnectionError", "gave_up"),
    )
    with captured_logs() as logs, pytest.raises(redis.ConnectionError):
        client.ping()
    assert _retries("ConnectionError", "retried") >= retried + 2
    assert _retries("ConnectionError", "gave_up") >= gave_up + 1
    events = [entry["event"] for entry in logs]
    assert events.count("redis_retry") >= 2
    assert "redis_gave_up" in events


def test_the_client_follows_the_master_through_a_sentinel_failover(tmp_path: Path) -> None:
    with redis_group(tmp_path / "redis") as group:
        settings = Settings(
            redis_url="redis://127.0.0.1:1/5",
            redis_sentinels=group.sentinel_addresses,
            redis_sentinel_master=MASTER_NAME,
        )
        client = redis_client(settings)
        client.set("before", "1")
        old = group.master_port()
        assert redis.Redis(port=old, db=5).get("before") == b"1"
        group.kill_master()
        # The next command waits, retrying, until the Sentinels promote a replica.
        client.set("after", "2")
        new = group.master_port()
        assert new != old
        assert redis.Redis(port=new, db=5).get("after") == b"2"
        assert client.get("before") == b"1"


def test_prepared_statements_off_and_a_direct_url_for_migrations(database_url: str) -> None:
    settings = Settings(
        database_url=DATABASE_URL,
        database_prepared_statements=False,
        database_direct_url="postgres://root@db-direct:5432/dialer",
    )
    assert settings.migration_url == "postgresql+psycopg://root@db-direct:5432/dialer"
    assert Settings(database_url=DATABASE_URL).migration_url == DATABASE_URL
    assert "prepare_threshold" not in libpq_url(settings.database_url)
    with engine_for(settings.database_url).connect() as conn:
        for _ in range(8):  # psycopg prepares a statement at its 5th run by default
            assert conn.execute(text("SELECT 1")).scalar() == 1
        assert conn.connection.driver_connection.prepare_threshold is None  # type: ignore[union-attr]
        assert conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar() == 0
