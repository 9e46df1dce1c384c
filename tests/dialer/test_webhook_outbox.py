"""The outbox: an attempt's end and its webhook events are one transaction, on the ORM
path (`attempt_end`) and on the status webhook's fast path; campaigns' completion and
pause write theirs in the transition's transaction."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from campaigns import lifecycle
from dialer.calls import expire_pending_jobs
from dialer.campaign_state import BREAKER, PACER, CampaignAction, transition
from dialer.dispatch.attempt_end import end_unplaced, finish_call
from dialer.runtime import Runtime
from dialer.web.app import create_app
from dialer.webhooks.outbox import record_contacts_ended
from models import (
    AttemptStatus,
    CallAttempt,
    CallJob,
    CampaignStatus,
    JobStatus,
    Outcome,
    WebhookEvent,
    WebhookStatus,
    engine_for,
    transaction,
    utcnow,
)
from tests.dialer.test_callbacks import BASE, SID, post, status
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.servers import serve_app

HOOK = "https://hooks.example.test/dialer"
METADATA = {"crm_id": "42", "lang": "en"}


@pytest.fixture
def runtime_settings() -> dict[str, Any]:
    return {"public_base_url": BASE}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[httpx.Client]:
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url) as http:
        yield http


def live_attempt(
    url: str,
    *,
    account_hook: str | None = HOOK,
    contact_hook: str | None = None,
    max_attempts: int = 2,
    attempt_status: AttemptStatus = AttemptStatus.QUEUED,
    account: str = "acme",
) -> int:
    """A live attempt (the contact's first) of a running campaign that retries busy."""
    with transaction(url) as session:
        owner = make_account(session, account, webhook_url=account_hook)
        campaign = make_campaign(
            session,
            owner,
            status=CampaignStatus.RUNNING,
            max_attempts=max_attempts,
            retry_policy={"busy": {"retry": True, "delay_s": 60}},
        )
        job = make_job(
            session,
            campaign,
            "+12125550143",
            status=JobStatus.IN_PROGRESS,
            attempt_count=1,
            metadata_=METADATA,
            webhook_url=contact_hook,
        )
        sid = SID if account == "acme" else "CA" + "c" * 32
        return make_attempt(session, job, status=attempt_status, call_sid=sid).id


def events(url: str) -> list[tuple[WebhookEvent, dict[str, Any]]]:
    with transaction(url) as session:
        rows = session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        return [(row, json.loads(row.body)) for row in rows]


def end_call(url: str, runtime: Runtime, attempt_id: int, **columns: Any) -> None:
    """The ORM path: the attempt reached a terminal status; `finish_call` persists it."""
    with transaction(url) as session:
        attempt = session.get_one(CallAttempt, attempt_id, with_for_update=True)
        for name, value in columns.items():
            setattr(attempt, name, value)
        finish_call(session, runtime, attempt)


def test_an_answered_call_writes_call_and_contact_completed(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    attempt_id = live_attempt(url)
    end_call(
        url,
        runtime,
        attempt_id,
        status=AttemptStatus.COMPLETED,
        answered_by="human",
        duration_s=42,
        digits="1",
    )
    written = events(url)
    assert [body["type"] for _, body in written] == ["call.completed", "contact.completed"]
    (call_row, call), (_, contact) = written
    assert call_row.url == HOOK
    assert call_row.status is WebhookStatus.PENDING
    assert call_row.event_id == call["id"] and call["id"].startswith("evt_")
    assert call["id"] != contact["id"]
    assert set(call) == {"id", "type", "created", "data"}
    with transaction(url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        job = session.get_one(CallJob, attempt.job_id)
    assert call["data"] == {
        "call_id": job.id,
        "contact_id": job.id,
        "attempt_id": attempt_id,
        "attempt_no": 1,
        "campaign_id": job.campaign_id,
        "call_sid": SID,
        "to": "+12125550143",
        "from": "+15005550006",
        "status": "completed",
        "outcome": "answered",
        "answered_by": "human",
        "duration_s": 42,
        "digits": "1",
        "menu_action": None,
        "recording_url": None,
        "recording_duration_s": None,
        "error_code": None,
        "error_message": None,
        "contact_done": True,
        "contact_status": "done",
        "next_attempt_at": None,
        "metadata": METADATA,
    }
    assert contact["data"] == {
        "call_id": job.id,
        "contact_id": job.id,
        "campaign_id": job.campaign_id,
        "to": "+12125550143",
        "status": "done",
        "outcome": "answered",
        "attempts": 1,
        "last_attempt_id": attempt_id,
        "menu_action": None,
        "metadata": METADATA,
    }


def test_a_retried_contact_gets_call_completed_only(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    attempt_id = live_attempt(url)
    end_call(url, runtime, attempt_id, status=AttemptStatus.BUSY)
    ((_, call),) = events(url)
    assert call["type"] == "call.completed"
    assert call["data"]["outcome"] == "busy"
    assert call["data"]["contact_done"] is False
    assert call["data"]["contact_status"] == "pending"
    assert call["data"]["next_attempt_at"].endswith("Z")


def test_a_rolled_back_end_leaves_no_event(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    attempt_id = live_attempt(url)
    with pytest.raises(RuntimeError), transaction(url) as session:
        attempt = session.get_one(CallAttempt, attempt_id, with_for_update=True)
        attempt.status = AttemptStatus.COMPLETED
        finish_call(session, runtime, attempt)
        session.flush()
        raise RuntimeError("the transaction fails after the end was decided")
    assert events(url) == []
    with transaction(url) as session:
        assert session.get_one(CallAttempt, attempt_id).status is AttemptStatus.QUEUED


def test_no_url_no_event_and_the_contact_url_overrides_the_account(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    end_call(url, runtime, live_attempt(url, account_hook=None), status=AttemptStatus.COMPLETED)
    assert events(url) == []
    override = "https://crm.example.test/hook"
    attempt_id = live_attempt(url, account_hook=None, contact_hook=override, account="other")
    end_call(url, runtime, attempt_id, status=AttemptStatus.COMPLETED)
    assert {row.url for row, _ in events(url)} == {override}


def test_a_contact_ended_without_a_call_gets_its_events(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    attempt_id = live_attempt(url, attempt_status=AttemptStatus.DIALING)
    with transaction(url) as session:
        attempt = session.get_one(CallAttempt, attempt_id, with_for_update=True)
        end_unplaced(session, runtime, attempt, outcome=Outcome.DO_NOT_CALL)
    (_, call), (_, contact) = events(url)
    assert call["data"]["status"] == "not-placed"
    assert call["data"]["outcome"] == contact["data"]["outcome"] == "do_not_call"
    assert contact["data"]["status"] == "done"


def test_an_unplaced_attempt_that_leaves_its_contact_pending_writes_nothing(
    runtime: Runtime,
) -> None:
    url = runtime.settings.database_url
    attempt_id = live_attempt(url, attempt_status=AttemptStatus.PLACING)
    with transaction(url) as session:
        attempt = session.get_one(CallAttempt, attempt_id, with_for_update=True)
        end_unplaced(session, runtime, attempt, outcome=None, counts_as_dial_error=False)
    assert events(url) == []


def test_the_fast_path_writes_the_events_with_the_end(
    client: httpx.Client, runtime: Runtime
) -> None:
    url = runtime.settings.database_url
    attempt_id = live_attempt(url)
    assert post(client, attempt_id, status("in-progress", 1)).status_code == 204
    [(_, answered)] = events(url)  # not an end: the answer
    assert answered["type"] == "call.answered"
    assert answered["data"]["attempt_id"] == attempt_id
    params = status("completed", 2, CallDuration="17", AnsweredBy="human")
    assert post(client, attempt_id, params).status_code == 204
    _, (call_row, call), (_, contact) = events(url)
    assert call_row.url == HOOK
    assert call["data"]["attempt_id"] == attempt_id
    assert call["data"]["duration_s"] == 17
    assert call["data"]["answered_by"] == "human"
    assert call["data"]["outcome"] == contact["data"]["outcome"] == "answered"
    assert call["data"]["metadata"] == contact["data"]["metadata"] == METADATA
    # A duplicate of the final callback changes nothing, and writes no second event.
    assert post(client, attempt_id, params).status_code == 204
    assert len(events(url)) == 3


def test_the_fast_path_end_and_its_events_commit_together(
    client: httpx.Client, runtime: Runtime
) -> None:
    url = runtime.settings.database_url
    attempt_id = live_attempt(url)
    # A check at commit that fails once events are written: the whole transaction (the
    # stored callback, the attempt's end, the contact's step) must roll back with them.
    with engine_for(url).begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;"
                "CREATE CONSTRAINT TRIGGER refuse_events AFTER INSERT ON webhook_events "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_events()"
            )
        )
    try:
        # The commit fails: a 500 (Twilio retries), or, as uvicorn sometimes closes the
        # connection once the app re-raises, no reply at all; either way nothing committed.
        with contextlib.suppress(httpx.TransportError):
            assert post(client, attempt_id, status("completed", 2)).status_code == 500
    finally:
        with engine_for(url).begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_events ON webhook_events"))
            conn.execute(text("DROP FUNCTION refuse_events()"))
    assert events(url) == []
    with transaction(url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        assert attempt.status is AttemptStatus.QUEUED
        assert session.get_one(CallJob, attempt.job_id).status is JobStatus.IN_PROGRESS
    # Twilio retries the delivery (on a new connection): now it ends the attempt and writes
    # its events.
    with httpx.Client(base_url=client.base_url) as fresh:
        assert post(fresh, attempt_id, status("completed", 2)).status_code == 204
    assert [body["type"] for _, body in events(url)] == ["call.completed", "contact.completed"]


def campaign_events(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
    return [json.loads(row.body) for row in rows]


def test_campaign_pause_breaker_and_completion_write_their_events(db_session: Session) -> None:
    account = make_account(db_session, webhook_url=HOOK)
    campaign = make_campaign(db_session, account, status=CampaignStatus.DRAFT)
    lifecycle.start(db_session, account.id, campaign.id, actor="cli:test")
    db_session.flush()
    assert campaign_events(db_session) == []  # starting is not an event
    lifecycle.pause(db_session, account.id, campaign.id, actor="cli:test")
    lifecycle.resume(db_session, account.id, campaign.id, actor="cli:test")
    transition(
        campaign,
        CampaignAction.TRIP_BREAKER,
        actor=BREAKER,
        reason="provider error 20003: bad auth",
    )
    transition(campaign, CampaignAction.RESUME, actor="cli:test")
    transition(campaign, CampaignAction.COMPLETE, actor=PACER)
    db_session.flush()
    written = campaign_events(db_session)
    assert [e["type"] for e in written] == [
        "campaign.paused",
        "campaign.paused",
        "campaign.completed",
    ]
    base = {"campaign_id": campaign.id, "name": campaign.name}
    assert written[0]["data"] == {
        **base,
        "status": "paused",
        "reason": "paused by operator",
        "breaker": False,
    }
    assert written[1]["data"] == {
        **base,
        "status": "paused",
        "reason": "provider error 20003: bad auth",
        "breaker": True,
    }
    assert written[2]["data"] == {**base, "status": "completed", "reason": None, "breaker": False}


def test_a_campaign_of_an_account_without_url_writes_nothing(db_session: Session) -> None:
    account = make_account(db_session)
    campaign = make_campaign(db_session, account, status=CampaignStatus.RUNNING)
    transition(campaign, CampaignAction.COMPLETE, actor=PACER)
    db_session.flush()
    assert campaign_events(db_session) == []


def contact_events(session: Session) -> list[dict[str, Any]]:
    bodies = session.scalars(
        select(WebhookEvent.body)
        .where(WebhookEvent.type == "contact.completed")
        .order_by(WebhookEvent.id)
    )
    return [json.loads(body) for body in bodies]


def test_contacts_ended_in_bulk_get_contact_completed(db_session: Session) -> None:
    # Cancelled with their campaign, or expired at its end_at: no attempt ends for them,
    # so the bulk end writes their events.
    account = make_account(db_session, webhook_url=HOOK)
    campaign = make_campaign(db_session, account, status=CampaignStatus.RUNNING)
    kept = make_job(db_session, campaign, "+12125550143", metadata_=METADATA)
    plain = make_job(db_session, campaign, "+12125550144")
    lifecycle.cancel(db_session, account.id, campaign.id, actor="cli:test")
    db_session.flush()
    written = {e["data"]["contact_id"]: e for e in contact_events(db_session)}
    assert set(written) == {kept.id, plain.id}
    assert len({e["id"] for e in written.values()}) == 2
    event = written[kept.id]
    assert (event["data"]["status"], event["data"]["outcome"]) == ("canceled", None)
    assert event["data"]["metadata"] == METADATA
    assert event["created"].endswith("Z")

    other = make_campaign(db_session, account, status=CampaignStatus.RUNNING)
    expired_job = make_job(db_session, other, "+12125550145")
    ended = expire_pending_jobs(db_session, other.id)
    record_contacts_ended(db_session, account.id, ended, utcnow())
    db_session.flush()
    last = contact_events(db_session)[-1]["data"]
    assert (last["contact_id"], last["status"], last["outcome"]) == (
        expired_job.id,
        "done",
        "expired",
    )


def test_contacts_ended_in_bulk_without_url_write_nothing(db_session: Session) -> None:
    account = make_account(db_session)
    campaign = make_campaign(db_session, account, status=CampaignStatus.RUNNING)
    make_job(db_session, campaign, "+12125550143")
    lifecycle.cancel(db_session, account.id, campaign.id, actor="cli:test")
    db_session.flush()
    assert contact_events(db_session) == []
