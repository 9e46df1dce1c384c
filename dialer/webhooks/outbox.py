"""The outbox: webhook events written in the same transaction as their cause.

An attempt's end (`dialer.dispatch.attempt_end` on the ORM path, the status webhook's
raw-SQL fast path in `dialer.dispatch.callbacks`) and a campaign's completion or pause
(`dialer.campaign_state.transition`) add their events here, in their own transaction: a
rolled-back end leaves no event, and a committed end always has its event. The URL is
fixed at write (the contact's webhook URL, else the account's); with neither, nothing is
written. After the commit the events are handed to the dispatcher the task layer
registered (`set_dispatcher`: one delivery task per event); where none is registered (a
CLI command) or a message is lost, the delivery sweep (`dialer.webhooks.delivery.sweep`)
finds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import select, text
from sqlalchemy.orm import Session, object_session

from dialer.calls import JobStep
from dialer.webhooks.events import (
    AttemptEnd,
    Event,
    EventType,
    answered_event,
    attempt_events,
    new_event,
)
from models import (
    Account,
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignStatus,
    WebhookEvent,
)
from models.asyncdb import AsyncConnection

log = structlog.get_logger(__name__)

Dispatcher = Callable[[Sequence[str]], object]
"""Sends the delivery of committed events (by event id)."""

_dispatcher: Dispatcher | None = None


def set_dispatcher(dispatcher: Dispatcher | None) -> None:
    """Register what sends committed events to delivery (the task layer does, on import)."""
    global _dispatcher  # one per process, set once by the task layer
    _dispatcher = dispatcher


def dispatch(event_ids: Sequence[str]) -> None:
    """Hand committed events to the registered dispatcher, if any (else the sweep).

    Best effort: the events are committed and the sweep finds any that were not sent, so
    a failure here (the broker unreachable) is logged, never raised into the caller whose
    transaction already committed.
    """
    if _dispatcher is None or not event_ids:
        return
    try:
        _dispatcher(event_ids)
    except Exception as error:  # the broker's errors are the task layer's own types
        log.warning("webhook_dispatch_failed", event_ids=list(event_ids), error=str(error))


def dispatch_after_commit(session: Session, event_ids: list[str]) -> None:
    """Dispatch `event_ids` once `session`'s transaction (a `models.transaction`) commits."""
    hooks = session.info.get("after_commit")
    if hooks is not None:  # a session `models.transaction` opened
        hooks.append(lambda: dispatch(event_ids))


def add_events(session: Session, account_id: int, url: str, events: list[Event]) -> None:
    """Write `events` for `url` in `session`'s transaction; dispatched after its commit."""
    if not events:
        return
    session.add_all(
        WebhookEvent(
            event_id=event.event_id,
            account_id=account_id,
            type=event.type,
            url=url,
            body=event.body,
        )
        for event in events
    )
    dispatch_after_commit(session, [event.event_id for event in events])


def attempt_end(attempt: CallAttempt, job: CallJob) -> AttemptEnd:
    """The `AttemptEnd` of an ORM attempt and its contact."""
    return AttemptEnd(
        attempt_id=attempt.id,
        attempt_no=attempt.attempt_no,
        contact_id=job.id,
        campaign_id=attempt.campaign_id,
        call_sid=attempt.call_sid,
        to=attempt.phone_e164,
        from_=attempt.from_e164,
        status=attempt.status,
        answered_by=attempt.answered_by,
        duration_s=attempt.duration_s,
        digits=attempt.digits,
        error_code=attempt.error_code,
        error_message=attempt.error_message,
        metadata=job.metadata_,
        menu_action=attempt.menu_action,
        recording_url=attempt.recording_url,
        recording_duration_s=attempt.recording_duration_s,
    )


def record_attempt_end(
    session: Session, attempt: CallAttempt, job: CallJob, step: JobStep, now: datetime
) -> None:
    """The ORM path: write `call.completed` (and `contact.completed`) for an ended attempt
    whose contact takes `step`, when the contact or its account has a webhook URL."""
    url = job.webhook_url or session.scalar(
        select(Account.webhook_url).where(Account.id == job.account_id)
    )
    if url:
        events = attempt_events(attempt_end(attempt, job), step, now)
        add_events(session, job.account_id, url, events)


_CAMPAIGN_EVENTS = {
    CampaignStatus.COMPLETED: EventType.CAMPAIGN_COMPLETED,
    CampaignStatus.PAUSED: EventType.CAMPAIGN_PAUSED,
}


def record_campaign_event(campaign: Campaign, *, breaker: bool, now: datetime) -> None:
    """Write `campaign.completed` or `campaign.paused` for a campaign that just became so,
    in the transaction of the session it belongs to (no session: nothing to write in)."""
    type_ = _CAMPAIGN_EVENTS.get(campaign.status)
    session = object_session(campaign)
    if type_ is None or session is None:
        return
    url = session.scalar(select(Account.webhook_url).where(Account.id == campaign.account_id))
    if not url:
        return
    data = {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "status": campaign.status.value,
        "reason": campaign.status_reason,
        "breaker": breaker,
    }
    add_events(session, campaign.account_id, url, [new_event(type_, data, now)])


_CONTACTS_ENDED = """
WITH ended AS (
    SELECT j.id, j.account_id, j.campaign_id, j.phone_e164, j.status, j.outcome,
           j.attempt_count, j.metadata, coalesce(j.webhook_url, a.webhook_url) AS url,
           'evt_' || replace(gen_random_uuid()::text, '-', '') AS event_id
    FROM call_jobs j JOIN accounts a ON a.id = j.account_id
    WHERE j.id = ANY(CAST(:ids AS bigint[])) AND coalesce(j.webhook_url, a.webhook_url) IS NOT NULL
)
INSERT INTO webhook_events (event_id, account_id, type, url, body, status, attempts)
SELECT event_id, account_id, 'contact.completed', url,
       json_build_object(
           'id', event_id, 'type', 'contact.completed', 'created', CAST(:created AS text),
           'data', json_build_object(
               'call_id', id, 'contact_id', id, 'campaign_id', campaign_id,
               'to', phone_e164, 'status', status, 'outcome', outcome,
               'attempts', attempt_count, 'last_attempt_id', NULL, 'menu_action', NULL,
               'metadata', metadata
           )
       )::text,
       'pending', 0
FROM ended
RETURNING event_id
"""

_ANY_CONTACT_URL = (
    "SELECT EXISTS (SELECT FROM call_jobs WHERE id = ANY(CAST(:ids AS bigint[]))"
    " AND webhook_url IS NOT NULL)"
)

_DISPATCH_AT_ONCE = 1000
"""Up to this many events of one bulk end are sent to delivery after the commit; more are
left to the delivery sweep, so a cancelled million-contact campaign does not flood the
broker."""


def record_contacts_ended(
    session: Session, account_id: int, job_ids: Sequence[int], now: datetime
) -> None:
    """`contact.completed` for the account's contacts `job_ids`, ended without an attempt
    ending (expired at their campaign's `end_at` or their `call_before`, cancelled with
    their campaign), in `session`'s transaction, for those whose contact or account has a
    webhook URL: one statement, none when no URL applies."""
    if not job_ids:
        return
    ids = list(job_ids)
    account_url = session.scalar(select(Account.webhook_url).where(Account.id == account_id))
    if not account_url and not session.scalar(text(_ANY_CONTACT_URL), {"ids": ids}):
        return
    created = now.isoformat().replace("+00:00", "Z")
    event_ids = list(
        session.execute(text(_CONTACTS_ENDED), {"ids": ids, "created": created}).scalars()
    )
    if 0 < len(event_ids) <= _DISPATCH_AT_ONCE:
        dispatch_after_commit(session, event_ids)


_INSERT = """
INSERT INTO webhook_events (event_id, account_id, type, url, body, status, attempts)
SELECT e.event_id, %(account_id)s, e.type, %(url)s, e.body, 'pending', 0
FROM unnest(%(event_ids)s::text[], %(types)s::text[], %(bodies)s::text[]) AS e(event_id, type, body)
"""


async def insert_events_async(
    conn: AsyncConnection,
    account_id: int,
    url: str,
    events: list[Event],
    after_commit: list[Callable[[], object]],
) -> None:
    """The fast path: write `events` in `conn`'s transaction with one statement; dispatched
    after its commit (`after_commit` is `models.asyncdb.transaction`'s hook list)."""
    if not events:
        return
    await conn.execute(
        _INSERT,
        {
            "account_id": account_id,
            "url": url,
            "event_ids": [e.event_id for e in events],
            "types": [e.type.value for e in events],
            "bodies": [e.body for e in events],
        },
    )
    event_ids = [event.event_id for event in events]
    after_commit.append(lambda: dispatch(event_ids))


class EndedCall(Protocol):
    """The attempt columns an event reports (the fast path's `AttemptRow` has them)."""

    status: AttemptStatus
    call_sid: str | None
    answered_by: str | None
    duration_s: int | None
    digits: str | None
    menu_action: str | None
    recording_url: str | None
    recording_duration_s: int | None
    error_code: int | None
    error_message: str | None


def _fast_path_end(row: Mapping[str, Any], attempt: EndedCall) -> AttemptEnd:
    return AttemptEnd(
        attempt_id=row["id"],
        attempt_no=row["attempt_no"],
        contact_id=row["job_id"],
        campaign_id=row["campaign_id"],
        call_sid=attempt.call_sid,
        to=row["phone_e164"],
        from_=row["from_e164"],
        status=attempt.status,
        answered_by=attempt.answered_by,
        duration_s=attempt.duration_s,
        digits=attempt.digits,
        error_code=attempt.error_code,
        error_message=attempt.error_message,
        metadata=row["metadata"] or {},
        menu_action=attempt.menu_action,
        recording_url=attempt.recording_url,
        recording_duration_s=attempt.recording_duration_s,
    )


async def record_answered_async(
    conn: AsyncConnection,
    answered: Sequence[tuple[Mapping[str, Any], EndedCall]],
    after_commit: list[Callable[[], object]],
    now: datetime,
) -> None:
    """The fast path's `call.answered` for the attempts whose calls were just answered
    (each `row` and `attempt` as `record_attempt_end_async` takes them), those with a
    webhook URL: one statement per account and URL (one for a batch of one account)."""
    grouped: dict[tuple[int, str], list[Event]] = {}
    for row, attempt in answered:
        if row["webhook_url"]:
            event = answered_event(_fast_path_end(row, attempt), now)
            grouped.setdefault((row["account_id"], row["webhook_url"]), []).append(event)
    for (account_id, url), events in grouped.items():
        await insert_events_async(conn, account_id, url, events, after_commit)


async def record_attempt_end_async(
    conn: AsyncConnection,
    row: Mapping[str, Any],
    attempt: EndedCall,
    step: JobStep,
    after_commit: list[Callable[[], object]],
    now: datetime,
) -> None:
    """The fast path's `record_attempt_end`: `row` is its locking query's row (the
    attempt's ids, `attempt_no`, `phone_e164`, `from_e164`, the job's `metadata` and the
    `webhook_url` that applies), `attempt` the attempt's new state; one statement, only
    when the contact or its account has a webhook URL."""
    url = row["webhook_url"]
    if not url:
        return
    events = attempt_events(_fast_path_end(row, attempt), step, now)
    await insert_events_async(conn, row["account_id"], url, events, after_commit)
