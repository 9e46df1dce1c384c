"""The migrations produce the schema the models describe, and the models round-trip."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from models import Base, CallJob, JobStatus, engine_for
from models.migrate import upgrade
from tests.factories import make_account, make_campaign, make_job


def test_migrations_match_models(database_url: str) -> None:
    with engine_for(database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_job_defaults(db_session: Session) -> None:
    campaign = make_campaign(db_session, make_account(db_session))
    job = make_job(db_session, campaign, "+12125550143")
    db_session.refresh(job)
    assert job.status is JobStatus.PENDING
    assert job.attempt_count == 0
    assert job.next_due_at is not None
    assert db_session.get(CallJob, job.id) is job


def test_the_migration_refuses_a_caller_id_two_accounts_hold(database_url: str) -> None:
    url = f"{database_url}_shared_numbers"
    admin = create_engine(
        database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        upgrade(url, "0011")
        engine = engine_for(url)
        with engine.begin() as conn:
            for name in ("first", "second"):
                conn.execute(
                    text(
                        "INSERT INTO accounts (name, max_concurrency, cps, "
                        "max_calls_per_number_per_day) VALUES (:name, 10, 1, 3)"
                    ),
                    {"name": name},
                )
            conn.execute(
                text(
                    "INSERT INTO caller_ids (account_id, e164) SELECT id, n FROM accounts, "
                    "unnest(ARRAY['+14155550101', '+15005550006']) AS n"
                )
            )
        with pytest.raises(RuntimeError, match=r"\+14155550101 \(accounts first, second\)"):
            upgrade(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "DELETE FROM caller_ids WHERE e164 = '+14155550101' AND account_id = "
                    "(SELECT id FROM accounts WHERE name = 'second')"
                )
            )
        upgrade(url)  # the test number stays on both
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()
