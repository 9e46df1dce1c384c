"""Migration 0013: schedules stored with settings the operator schema now refuses keep
firing, without them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import select

from campaigns import lifecycle, schedules
from campaigns.options import CampaignOptions
from models import (
    Account,
    Campaign,
    Schedule,
    ScheduleRun,
    ScheduleRunStatus,
    engine_for,
    transaction,
)
from tests.campaigns.test_schedules import at, new_schedule

MIGRATION = (
    Path(__file__).resolve().parents[2]
    / "models/migrations/versions/2026_12_07_0200-schedule_options_operator_schema.py"
)


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0013", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schedules_stored_with_internal_settings_fire_without_them(
    committed_db: str, tmp_path: Path
) -> None:
    schedule_id = new_schedule(committed_db, None, at(2026, 11, 22, 12))
    stored = {
        "message": "Hello {first_name}.",
        "max_concurrency": 2,
        "allow_premium": True,
        "allowed_countries": ["JM"],
        "dial_retries": 40,
        "end_at": "2026-11-23T17:00:00Z",
        "retry_policy": {
            "answered": {"retry": True, "delay_s": "x"},
            "busy": {"retry": True, "delay_s": 900},
            "failed": {"retry": True, "delay_s": "x"},
        },
    }
    with transaction(committed_db) as session:
        schedule = session.get_one(Schedule, schedule_id)
        schedule.options = stored
        old = lifecycle.new_campaign(
            session,
            session.get_one(Account, schedule.account_id),
            CampaignOptions(name="old run", message="Hi.", allow_premium=True),
        )
        session.add(
            ScheduleRun(
                schedule_id=schedule_id,
                occurrence=at(2026, 11, 21, 9),
                manual=False,
                status=ScheduleRunStatus.OK,
                campaign_id=old.id,
                rows=0,
                accepted=0,
                rejected=0,
                pushed=0,
            )
        )
        old_id = old.id
    migration = _migration()
    with (
        engine_for(committed_db).begin() as connection,
        Operations.context(MigrationContext.configure(connection)),
    ):
        migration.upgrade()
    with transaction(committed_db) as session:
        assert session.get_one(Schedule, schedule_id).options == {
            "message": "Hello {first_name}.",
            "max_concurrency": 2,
            "retry_policy": {"busy": {"retry": True, "delay_s": 900}},
        }
        assert session.get_one(Campaign, old_id).allow_premium is False
        owner = session.get_one(Schedule, schedule_id).account_id
        schedules.add_contacts(
            session, owner, schedule_id, [{"phone": "+12025550101", "first_name": "Ada"}]
        )
    [fired] = schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 9, 0, 1))
    assert fired.status is ScheduleRunStatus.OK
    with transaction(committed_db) as session:
        campaign = session.scalars(select(Campaign).where(Campaign.id == fired.campaign_id)).one()
        assert (campaign.allow_premium, campaign.allowed_countries, campaign.end_at) == (
            False,
            None,
            None,
        )
        assert campaign.retry_policy["busy"] == {"retry": True, "delay_s": 900}
