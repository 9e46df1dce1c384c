"""The migrations produce the schema the models describe, and the models round-trip."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from models import Base, CallJob, JobStatus, engine_for
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
