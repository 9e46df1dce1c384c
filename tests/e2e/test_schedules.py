"""A minute-by-minute schedule on the real stack (a worker, TWO beats, the simulator):
exactly one run and one campaign per occurrence, and the campaigns are dialled."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import func, select

from campaigns import schedules
from dialer.windows import daytime_zone
from models import CallAttempt, Campaign, ScheduleRun, ScheduleRunStatus, transaction, utcnow
from tests.e2e.conftest import Stack
from tests.factories import account_named


def test_two_beats_fire_each_minute_once(stack: Stack, tmp_path: Path) -> None:
    url = stack.runtime.settings.database_url
    source = tmp_path / "reminders.csv"
    # The contacts live where it is early afternoon, so they are inside their window now.
    zone = daytime_zone(utcnow())
    source.write_text(
        f"phone,first_name,timezone\n+12025550101,Ada,{zone}\n+12025550102,Bob,{zone}\n"
    )
    with transaction(url) as session:
        account = account_named(session, "acme")
        schedule_id = schedules.create_schedule(
            session,
            account,
            name="Every minute",
            cron="* * * * *",
            timezone="Europe/London",
            csv_path=source,
            options={"message": "Hello {first_name}."},
            actor="test",
        ).id
    stack.env["SCHEDULE_TICK_S"] = "1"
    stack.start_worker()
    stack.start_beat("beat-a")
    stack.start_beat("beat-b")
    deadline = time.monotonic() + 150
    fired: list[ScheduleRun] = []
    while time.monotonic() < deadline and len(fired) < 2:
        time.sleep(1)
        with transaction(url) as session:
            fired = list(
                session.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id))
            )
    assert len(fired) >= 2, "two occurrences did not fire within 150 s"
    time.sleep(3)  # any second firing of the same occurrence would land by now
    with transaction(url) as session:
        runs = list(
            session.scalars(
                select(ScheduleRun)
                .where(ScheduleRun.schedule_id == schedule_id)
                .order_by(ScheduleRun.occurrence)
            )
        )
        campaigns = session.scalar(select(func.count()).select_from(Campaign))
        names = set(session.scalars(select(Campaign.name)))
    occurrences = [r.occurrence for r in runs]
    assert len(set(occurrences)) == len(occurrences)
    assert all(o.second == 0 and o.microsecond == 0 for o in occurrences)
    assert all(r.status is ScheduleRunStatus.OK and r.accepted == 2 for r in runs)
    assert campaigns == len(runs) == len(names)
    # The first occurrence's campaign is dialled by the worker.
    deadline = time.monotonic() + 30
    dialled = 0
    while time.monotonic() < deadline and dialled < 2:
        time.sleep(0.5)
        with transaction(url) as session:
            dialled = (
                session.scalar(
                    select(func.count(func.distinct(CallAttempt.job_id))).where(
                        CallAttempt.campaign_id == runs[0].campaign_id
                    )
                )
                or 0
            )
    assert dialled == 2
