"""Schedules on a controllable clock (`now` passed in): one run per occurrence however many
beats tick, across daylight-saving changes, catch-up once after downtime; pushed contacts
consumed once; failed and empty runs; pause, resume, delete; and the history."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from campaigns import accounts, lifecycle, schedules
from campaigns.history import campaign_events
from dialer.dispatch.pacer import dispatch_round
from dialer.errors import ConflictError, DialerError, NotFoundError
from dialer.runtime import Runtime
from models import (
    Account,
    CallJob,
    Campaign,
    CampaignEvent,
    CampaignStatus,
    JobStatus,
    Outcome,
    Schedule,
    ScheduleContact,
    ScheduleRun,
    ScheduleRunStatus,
    ScheduleStatus,
    transaction,
)
from tests.factories import make_account, make_caller_id

CSV = "phone,first_name\n+12025550101,Ada\n+12025550102,Bob\n+12025550103,Cy\n"


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def new_schedule(url: str, csv_path: Path | None, now: datetime, **fields: Any) -> int:
    with transaction(url) as session:
        account = session.scalars(select(Account).where(Account.name == "acme")).first()
        if account is None:
            account = make_account(session)
            make_caller_id(session, account)
        schedule = schedules.create_schedule(
            session,
            account,
            **{
                "name": "Clinic",
                "cron": "0 9 * * *",
                "timezone": "Europe/London",
                "csv_path": csv_path,
                "options": {"message": "Hello {first_name}.", "max_concurrency": 2},
                "actor": "cli:ada",
                "now": now,
                **fields,
            },
        )
        return schedule.id


def runs(url: str, schedule_id: int) -> list[ScheduleRun]:
    with transaction(url) as session:
        return list(
            session.scalars(
                select(ScheduleRun)
                .where(ScheduleRun.schedule_id == schedule_id)
                .order_by(ScheduleRun.occurrence)
            )
        )


def count(url: str, table: Any) -> int:
    with transaction(url) as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


@pytest.fixture
def contacts(tmp_path: Path) -> Path:
    path = tmp_path / "tomorrow.csv"
    path.write_text(CSV)
    return path


def test_two_beats_at_once_fire_an_occurrence_once(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    schedule_id = new_schedule(committed_db, contacts, at(2026, 11, 22, 12))
    with transaction(committed_db) as session:
        assert session.get_one(Schedule, schedule_id).next_run_at == at(2026, 11, 23, 9)
    now = at(2026, 11, 23, 9, 0, 3)
    start = threading.Barrier(4)
    fired: list[list[schedules.Fired]] = []

    def beat() -> None:
        start.wait()
        fired.append(schedules.fire_due(committed_db, tmp_path, now))

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(f) for f in fired) == [0, 0, 0, 1]
    [run] = runs(committed_db, schedule_id)
    assert (run.occurrence, run.status, run.rows, run.accepted, run.rejected) == (
        at(2026, 11, 23, 9),
        ScheduleRunStatus.OK,
        3,
        3,
        0,
    )
    with transaction(committed_db) as session:
        campaign = session.get_one(Campaign, run.campaign_id)
        assert campaign.name == "Clinic 2026-11-23 09:00 GMT"
        assert campaign.status is CampaignStatus.RUNNING
        assert campaign.max_concurrency == 2
        jobs = session.scalar(select(func.count()).where(CallJob.campaign_id == campaign.id))
        assert jobs == 3
        assert session.get_one(Schedule, schedule_id).next_run_at == at(2026, 11, 24, 9)
    # Later ticks of the same day fire nothing more.
    assert schedules.fire_due(committed_db, tmp_path, now + timedelta(minutes=30)) == []
    assert count(committed_db, Campaign) == 1


def test_the_unique_run_holds_when_a_beat_acts_on_a_stale_schedule(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    schedule_id = new_schedule(committed_db, contacts, at(2026, 11, 22, 12))
    now = at(2026, 11, 23, 9, 0, 3)
    assert len(schedules.fire_due(committed_db, tmp_path, now)) == 1
    # A beat that read the schedule before the firing committed acts on its old next run.
    with transaction(committed_db) as session:
        session.get_one(Schedule, schedule_id).next_run_at = at(2026, 11, 23, 9)
    assert schedules.fire_due(committed_db, tmp_path, now) == []
    assert len(runs(committed_db, schedule_id)) == 1
    assert count(committed_db, Campaign) == 1


def tick_every(url: str, data_dir: Path, start: datetime, end: datetime, step_s: int) -> None:
    now = start
    while now <= end:
        schedules.fire_due(url, data_dir, now)
        now += timedelta(seconds=step_s)


def test_spring_forward_fires_a_skipped_time_once_at_the_first_valid_time(
    committed_db: str, tmp_path: Path
) -> None:
    # New York, 2027-03-14: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
    schedule_id = new_schedule(
        committed_db, None, at(2027, 3, 13, 12), cron="30 2 * * *", timezone="America/New_York"
    )
    tick_every(committed_db, tmp_path, at(2027, 3, 14, 5), at(2027, 3, 14, 10), 300)
    [run] = runs(committed_db, schedule_id)
    assert run.occurrence == at(2027, 3, 14, 7)  # 03:00 EDT
    tick_every(committed_db, tmp_path, at(2027, 3, 15, 5), at(2027, 3, 15, 10), 300)
    assert [r.occurrence for r in runs(committed_db, schedule_id)] == [
        at(2027, 3, 14, 7),
        at(2027, 3, 15, 6, 30),  # 02:30 EDT
    ]


def test_fall_back_fires_a_repeated_time_once(committed_db: str, tmp_path: Path) -> None:
    # New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    schedule_id = new_schedule(
        committed_db, None, at(2026, 10, 31, 12), cron="30 1 * * *", timezone="America/New_York"
    )
    tick_every(committed_db, tmp_path, at(2026, 11, 1, 4), at(2026, 11, 1, 8), 300)
    [run] = runs(committed_db, schedule_id)
    assert run.occurrence == at(2026, 11, 1, 5, 30)  # 01:30 EDT, the first pass
    assert run.status is ScheduleRunStatus.EMPTY and run.campaign_id is None


def test_fall_back_keeps_a_wildcard_hour_in_real_time(committed_db: str, tmp_path: Path) -> None:
    schedule_id = new_schedule(
        committed_db, None, at(2026, 11, 1, 4, 50), cron="*/20 * * * *", timezone="America/New_York"
    )
    # 04:50 to 07:10 UTC spans 00:50 EDT .. 01:59 EDT, then 01:00 EST .. 02:10 EST.
    tick_every(committed_db, tmp_path, at(2026, 11, 1, 4, 50), at(2026, 11, 1, 7, 10), 60)
    occurrences = [r.occurrence for r in runs(committed_db, schedule_id)]
    assert occurrences == [at(2026, 11, 1, 5) + timedelta(minutes=20 * i) for i in range(7)]


def test_a_beat_back_from_downtime_catches_up_once(committed_db: str, tmp_path: Path) -> None:
    schedule_id = new_schedule(
        committed_db, None, at(2026, 11, 23, 8, 55), cron="*/10 * * * *", catch_up_s=900
    )
    # Down from 08:55 to 09:47: 09:00 .. 09:40 were missed; only 09:40 is fired.
    fired = schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 9, 47))
    assert [f.status for f in fired] == [ScheduleRunStatus.EMPTY]
    assert [r.occurrence for r in runs(committed_db, schedule_id)] == [at(2026, 11, 23, 9, 40)]
    assert schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 9, 48)) == []
    with transaction(committed_db) as session:
        assert session.get_one(Schedule, schedule_id).next_run_at == at(2026, 11, 23, 9, 50)


def test_occurrences_older_than_the_catch_up_are_skipped(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    schedule_id = new_schedule(committed_db, contacts, at(2026, 11, 22, 12), catch_up_s=3600)
    # 09:00 was missed by more than an hour: no run, one `skip` in the history.
    assert schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 10, 0, 1)) == []
    assert runs(committed_db, schedule_id) == []
    with transaction(committed_db) as session:
        assert session.get_one(Schedule, schedule_id).next_run_at == at(2026, 11, 24, 9)
        actions = session.scalars(
            select(CampaignEvent.action).where(CampaignEvent.schedule_id == schedule_id)
        ).all()
    assert actions == ["create", "skip"]
    # Within the hour it would have fired.
    fired = schedules.fire_due(committed_db, tmp_path, at(2026, 11, 24, 9, 59, 59))
    assert len(fired) == 1


def test_pushed_contacts_join_the_next_batch_once(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    schedule_id = new_schedule(committed_db, contacts, at(2026, 11, 22, 12))
    with transaction(committed_db) as session:
        owner = session.get_one(Schedule, schedule_id).account_id
        rows = [{"phone": "+12025550104", "first_name": "Di"}, {"phone": "911", "first_name": "X"}]
        assert schedules.add_contacts(session, owner, schedule_id, rows) == 2
        pushed_csv = b"first_name;mobile\nEd;+12025550105\nAda again;+12025550101\n"
        assert schedules.add_contacts_csv(session, owner, schedule_id, io.BytesIO(pushed_csv)) == 2
    first = schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 9, 0, 1))
    second = schedules.fire_due(committed_db, tmp_path, at(2026, 11, 24, 9, 0, 1))
    one, two = runs(committed_db, schedule_id)
    assert (one.rows, one.accepted, one.rejected, one.pushed) == (7, 5, 2, 4)
    assert (two.rows, two.accepted, two.rejected, two.pushed) == (3, 3, 0, 0)
    assert count(committed_db, ScheduleContact) == 0
    with transaction(committed_db) as session:
        campaign = session.get_one(Campaign, first[0].campaign_id)
        assert campaign.ingest_summary["rejected"] == {"duplicate": 1, "emergency_or_short_code": 1}
        phones = set(
            session.scalars(select(CallJob.phone_e164).where(CallJob.campaign_id == campaign.id))
        )
        assert phones == {f"+1202555010{i}" for i in range(1, 6)}
    rejected = tmp_path / "rejected" / f"campaign-{first[0].campaign_id}-rejected.csv"
    assert "emergency" in rejected.read_text() and "duplicate" in rejected.read_text()
    assert second[0].campaign_id is not None
    assert not (tmp_path / "rejected" / f"campaign-{second[0].campaign_id}-rejected.csv").exists()


def test_pushed_contacts_are_checked_when_pushed(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    schedule_id = new_schedule(committed_db, contacts, at(2026, 11, 22, 12))
    with transaction(committed_db) as session:
        owner = session.get_one(Schedule, schedule_id).account_id
        for rows, code in (
            ([], "no_contacts"),
            ([{"name": "Ada"}], "no_phone_column"),
            ([{"phone": "+12025550104"}], "missing_variable"),
        ):
            with pytest.raises(DialerError) as refused:
                schedules.add_contacts(session, owner, schedule_id, rows)
            assert refused.value.code == code


def test_a_missing_file_is_a_failed_run_and_the_schedule_goes_on(
    committed_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "later.csv"
    schedule_id = new_schedule(committed_db, path, at(2026, 11, 22, 12))
    with transaction(committed_db) as session:
        owner = session.get_one(Schedule, schedule_id).account_id
        schedules.add_contacts(
            session, owner, schedule_id, [{"phone": "+12025550104", "first_name": "Di"}]
        )
    [fired] = schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 9, 0, 1))
    assert (fired.status, fired.campaign_id) == (ScheduleRunStatus.FAILED, None)
    [run] = runs(committed_db, schedule_id)
    assert run.error_code == "source_not_found" and str(path) in (run.error_message or "")
    assert count(committed_db, Campaign) == 0
    assert count(committed_db, ScheduleContact) == 1  # kept for the next run
    path.write_text(CSV)
    [fired] = schedules.fire_due(committed_db, tmp_path, at(2026, 11, 24, 9, 0, 1))
    assert fired.status is ScheduleRunStatus.OK
    assert runs(committed_db, schedule_id)[-1].accepted == 4


def test_unreadable_refused_and_empty_sources(committed_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    bad = tmp_path / "bad.csv"
    bad.write_text("name,city\nAda,Paris\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("phone,first_name\n")
    expected = {
        folder: (ScheduleRunStatus.FAILED, "source_unreadable"),
        bad: (ScheduleRunStatus.FAILED, "no_phone_column"),
        empty: (ScheduleRunStatus.EMPTY, None),
    }
    for path, (status, code) in expected.items():
        schedule_id = new_schedule(committed_db, path, at(2026, 11, 22, 12), name=path.name)
        [run] = [
            r
            for r in (schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 9, 0, 1)))
            if r.schedule_id == schedule_id
        ]
        assert (run.status, runs(committed_db, schedule_id)[0].error_code) == (status, code)
    assert count(committed_db, Campaign) == 0


def test_new_schedule_settings_are_checked(committed_db: str) -> None:
    now = at(2026, 11, 22, 12)
    for fields, code in (
        ({"cron": "0 9 * *"}, "invalid_cron"),
        ({"cron": "0 25 * * *"}, "invalid_cron"),
        ({"cron": "0 0 30 2 *"}, "invalid_cron"),
        ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"catch_up_s": 5}, "invalid_option"),
        ({"options": {"message": "Hi.", "max_concurrency": 0}}, "invalid_option"),
        ({"options": {"max_concurrency": 2}}, "missing_field"),
        ({"options": {"message": "Hi.", "name": "x"}}, "invalid_option"),
    ):
        with pytest.raises(DialerError) as refused:
            new_schedule(committed_db, None, now, **fields)
        assert refused.value.code == code, fields


def test_pause_resume_delete_and_the_schedule_history(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    schedule_id = new_schedule(committed_db, contacts, at(2026, 11, 22, 12))
    with transaction(committed_db) as session:
        owner = session.get_one(Schedule, schedule_id).account_id
        schedules.pause_schedule(session, owner, schedule_id, actor="api:acme")
        with pytest.raises(ConflictError):
            schedules.pause_schedule(session, owner, schedule_id, actor="api:acme")
    assert schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 9, 0, 1)) == []
    with transaction(committed_db) as session:
        # Resumed at 10:00: the 09:00 missed while paused is not caught up.
        resumed = schedules.resume_schedule(
            session, owner, schedule_id, actor="cli:ada", now=at(2026, 11, 23, 10)
        )
        assert resumed.next_run_at == at(2026, 11, 24, 9)
        schedules.update_schedule(
            session,
            owner,
            schedule_id,
            actor="cli:ada",
            cron="30 8 * * *",
            now=at(2026, 11, 23, 10),
        )
        assert resumed.next_run_at == at(2026, 11, 24, 8, 30)
    assert schedules.fire_due(committed_db, tmp_path, at(2026, 11, 23, 10, 0, 5)) == []
    with transaction(committed_db) as session:
        schedules.delete_schedule(session, owner, schedule_id, actor="cli:ada")
    with transaction(committed_db) as session:
        with pytest.raises(NotFoundError):
            schedules.get_schedule(session, owner, schedule_id)
        assert session.get_one(Schedule, schedule_id).status is ScheduleStatus.DELETED
        events = session.scalars(
            select(CampaignEvent)
            .where(CampaignEvent.schedule_id == schedule_id)
            .order_by(CampaignEvent.id)
        ).all()
    assert [(e.action, e.actor, e.to_status) for e in events] == [
        ("create", "cli:ada", "active"),
        ("pause", "api:acme", "paused"),
        ("resume", "cli:ada", "active"),
        ("update", "cli:ada", None),
        ("delete", "cli:ada", "deleted"),
    ]
    assert events[3].reason == "changed cron"
    assert schedules.fire_due(committed_db, tmp_path, at(2026, 11, 24, 8, 30, 1)) == []


def test_another_accounts_schedule_is_not_found(committed_db: str, contacts: Path) -> None:
    schedule_id = new_schedule(committed_db, contacts, at(2026, 11, 22, 12))
    with transaction(committed_db) as session:
        other = make_account(session, "other")
        with pytest.raises(NotFoundError) as missing:
            schedules.get_schedule(session, other.id, schedule_id)
        assert missing.value.code == "schedule_not_found"
        with pytest.raises(NotFoundError):
            schedules.update_schedule(session, other.id, schedule_id, actor="x", catch_up_s=90)


def test_run_now_and_the_campaign_history(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    schedule_id = new_schedule(committed_db, contacts, at(2026, 11, 22, 12))
    with transaction(committed_db) as session:
        owner = session.get_one(Schedule, schedule_id).account_id
    fired = schedules.run_now(committed_db, tmp_path, owner, schedule_id, actor="cli:ada")
    assert fired.status is ScheduleRunStatus.OK and fired.campaign_id is not None
    [run] = runs(committed_db, schedule_id)
    assert run.manual
    with transaction(committed_db) as session:
        lifecycle.pause(session, owner, fired.campaign_id, actor="api:acme")
        lifecycle.resume(session, owner, fired.campaign_id, actor="cli:bob")
        lifecycle.cancel(session, owner, fired.campaign_id, actor="cli:bob")
    with transaction(committed_db) as session:
        events = campaign_events(session, owner, fired.campaign_id).items
        history = [(e.action, e.actor, e.from_status, e.to_status) for e in events]
        assert events[0].schedule_id == schedule_id
        assert events[2].reason == "paused by operator"
        other = make_account(session, "other")
        with pytest.raises(NotFoundError):
            campaign_events(session, other.id, fired.campaign_id)
    assert history == [
        ("fire", "cli:ada", None, None),
        ("start", "cli:ada", "draft", "running"),
        ("pause", "api:acme", "running", "paused"),
        ("resume", "cli:bob", "paused", "running"),
        ("cancel", "cli:bob", "running", "canceled"),
    ]


def account_schedule(url: str, name: str, number: str, csv_path: Path, cron: str) -> int:
    """A schedule of a new account `name` presenting its caller ID `number`."""
    with transaction(url) as session:
        account = make_account(session, name)
        make_caller_id(session, account, number)
        return schedules.create_schedule(
            session,
            account,
            name=f"{name} reminders",
            cron=cron,
            timezone="Europe/London",
            csv_path=csv_path,
            options={"message": "Hello {first_name}.", "from_number": number},
            actor="cli:ada",
            now=at(2026, 11, 22, 12),
        ).id


def test_a_failing_schedule_does_not_stop_other_accounts_schedules(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    # Account A's schedule is due first; its caller ID is removed before it fires.
    hostile = account_schedule(committed_db, "a", "+15005550006", contacts, "0 9 * * *")
    other = account_schedule(committed_db, "b", "+15005550007", contacts, "1 9 * * *")
    with transaction(committed_db) as session:
        owner = session.get_one(Schedule, hostile).account_id
        accounts.remove_number(session, owner, "+15005550006")
    beat = at(2026, 11, 23, 9, 1, 1)
    fired = schedules.fire_due(committed_db, tmp_path, beat)
    assert [(f.schedule_id, f.status) for f in fired] == [
        (hostile, ScheduleRunStatus.FAILED),
        (other, ScheduleRunStatus.OK),
    ]
    [failed] = runs(committed_db, hostile)
    assert (failed.status, failed.error_code) == (ScheduleRunStatus.FAILED, "from_number_not_found")
    [ok] = runs(committed_db, other)
    assert ok.status is ScheduleRunStatus.OK and ok.accepted == 3
    with transaction(committed_db) as session:
        assert session.get_one(Schedule, hostile).next_run_at == at(2026, 11, 24, 9)
        reasons = [e.reason for e in schedules.schedule_events(session, owner, hostile).items]
    assert reasons[-1] == "occurrence 2026-11-23T09:00:00+00:00: failed: from_number_not_found"
    # It does not fail again at every beat: the next beat has nothing due.
    assert schedules.fire_due(committed_db, tmp_path, beat + timedelta(seconds=5)) == []


def test_an_unexpected_firing_error_is_a_failed_run_and_the_others_fire(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    hostile = account_schedule(committed_db, "a", "+15005550006", contacts, "0 9 * * *")
    other = account_schedule(committed_db, "b", "+15005550007", contacts, "1 9 * * *")
    with transaction(committed_db) as session:
        # Old data no check holds any more: a pushed contact that is not a row.
        session.add(ScheduleContact(schedule_id=hostile, fields="not a row"))
    beat = at(2026, 11, 23, 9, 1, 1)
    with capture_logs() as logs:
        fired = schedules.fire_due(committed_db, tmp_path, beat)
    assert [(f.schedule_id, f.status) for f in fired] == [
        (hostile, ScheduleRunStatus.FAILED),
        (other, ScheduleRunStatus.OK),
    ]
    [failed] = runs(committed_db, hostile)
    assert (failed.occurrence, failed.error_code) == (at(2026, 11, 23, 9), "internal_error")
    [logged] = [e for e in logs if e["event"] == "schedule_fire_failed"]
    assert logged["schedule_id"] == hostile and logged["exc_info"] is True
    with transaction(committed_db) as session:
        assert session.get_one(Schedule, hostile).next_run_at == at(2026, 11, 24, 9)
        owner = session.get_one(Schedule, hostile).account_id
        events = schedules.schedule_events(session, owner, hostile).items
        assert events[-1].action == "fire"
        assert events[-1].reason == "occurrence 2026-11-23T09:00:00+00:00: failed: internal_error"
    assert count(committed_db, Campaign) == 1  # B's alone: A's firing was rolled back whole
    assert schedules.fire_due(committed_db, tmp_path, beat + timedelta(seconds=5)) == []


def test_a_schedule_whose_zone_no_longer_reads_is_paused_after_a_failed_run(
    committed_db: str, tmp_path: Path, contacts: Path
) -> None:
    hostile = account_schedule(committed_db, "a", "+15005550006", contacts, "0 9 * * *")
    other = account_schedule(committed_db, "b", "+15005550007", contacts, "1 9 * * *")
    with transaction(committed_db) as session:
        session.get_one(Schedule, hostile).timezone = "Mars/Olympus_Mons"
    beat = at(2026, 11, 23, 9, 1, 1)
    fired = schedules.fire_due(committed_db, tmp_path, beat)
    assert [(f.schedule_id, f.status) for f in fired] == [
        (hostile, ScheduleRunStatus.FAILED),
        (other, ScheduleRunStatus.OK),
    ]
    [failed] = runs(committed_db, hostile)
    assert (failed.occurrence, failed.error_code) == (at(2026, 11, 23, 9), "invalid_timezone")
    with transaction(committed_db) as session:
        assert session.get_one(Schedule, hostile).status is ScheduleStatus.PAUSED
    assert schedules.fire_due(committed_db, tmp_path, beat + timedelta(seconds=5)) == []


def test_later_occurrences_still_call_their_contacts_after_the_first_ones_expiry(
    runtime: Runtime, contacts: Path
) -> None:
    """Issue 20 item 15: a schedule copied one fixed `end_at` into every occurrence, so
    once it passed every later run expired all its contacts at once. `expire_after_s` is
    counted from each occurrence."""
    url = runtime.settings.database_url
    options = {"message": "Hello {first_name}.", "expire_after_s": 12 * 3600}
    schedule_id = new_schedule(url, contacts, at(2026, 11, 22, 12), options=options)
    data_dir = runtime.settings.data_dir
    [first] = schedules.fire_due(url, data_dir, at(2026, 11, 23, 9, 0, 1))
    [second] = schedules.fire_due(url, data_dir, at(2026, 11, 24, 9, 0, 1))
    with transaction(url) as session:
        ends = [session.get_one(Campaign, fired.campaign_id).end_at for fired in (first, second)]
    assert ends == [at(2026, 11, 23, 21), at(2026, 11, 24, 21)]
    # The second day, 10:00 in Washington: the first batch's time is over, not the second's.
    runtime.clock = lambda: at(2026, 11, 24, 15)
    dispatch_round(runtime, first.account_id)
    with transaction(url) as session:
        outcomes = {
            campaign_id: sorted(
                (job.status, job.outcome)
                for job in session.scalars(
                    select(CallJob).where(CallJob.campaign_id == campaign_id)
                )
            )
            for campaign_id in (first.campaign_id, second.campaign_id)
        }
    assert outcomes[first.campaign_id] == [(JobStatus.DONE, Outcome.EXPIRED)] * 3
    # Still to be called (due from when they were ingested, by the wall clock).
    assert outcomes[second.campaign_id] == [(JobStatus.PENDING, None)] * 3
    with transaction(url) as session:
        assert session.get_one(Campaign, second.campaign_id).status is CampaignStatus.RUNNING
    assert [run.campaign_id for run in runs(url, schedule_id)] == [
        first.campaign_id,
        second.campaign_id,
    ]
