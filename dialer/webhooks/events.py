"""The events the customer's webhook receives, built from plain values (pure).

Every event is `{"id", "type", "created", "data"}`: `id` is `evt_` + 32 hex digits, the
same on every delivery try, so a receiver de-duplicates by it; `created` is ISO 8601 UTC.

- `call.completed`: an attempt ended: one that became a call, or one that ended its
  contact without a call (do-not-call, a refused number, dial errors). `data`: `call_id`
  and `contact_id` (the contact's id, the one `POST /v1/calls` answers with),
  `attempt_id`, `attempt_no`, `campaign_id`, `call_sid`, `to`, `from`, `status` (the
  provider's final call status, or `not-placed`), `outcome`, `answered_by`, `duration_s`,
  `digits`, `menu_action` (what the last key pressed did: `confirm`, `cancel`, `repeat`,
  `transfer`, `opt_out`; null: none), `recording_url` and `recording_duration_s` (when
  the call was recorded and the recording was ready before the call's end was applied),
  `error_code`, `error_message`, `contact_done`, `contact_status`, `next_attempt_at` (when
  the contact will be tried again), `metadata`.
- `call.answered`: a call was answered (by a person or a machine), sent when its
  answered status callback is applied. `data`: `call_id`, `contact_id`, `attempt_id`,
  `attempt_no`, `campaign_id`, `call_sid`, `to`, `from`, `answered_by` (Twilio
  `AnsweredBy`, when AMD had decided by then; else null), `metadata`.
- `contact.completed`: the contact is final. `data`: `call_id`, `contact_id`,
  `campaign_id`, `to`, `status` (`done` or `canceled`), `outcome`, `attempts`,
  `last_attempt_id`, `menu_action` (of the last attempt), `metadata`.
- `campaign.completed`, `campaign.paused`: `data`: `campaign_id`, `name`, `status`,
  `reason` (why it paused: the circuit breaker's provider error, or the operator),
  `breaker` (true when the circuit breaker paused it).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from dialer.calls import JobStep
from models import AttemptStatus, JobStatus


class EventType(StrEnum):
    CALL_ANSWERED = "call.answered"
    CALL_COMPLETED = "call.completed"
    CONTACT_COMPLETED = "contact.completed"
    CAMPAIGN_COMPLETED = "campaign.completed"
    CAMPAIGN_PAUSED = "campaign.paused"


FINAL_CONTACT = frozenset({JobStatus.DONE, JobStatus.CANCELED})


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """An ended attempt and its contact, as both persistence paths read them."""

    attempt_id: int
    attempt_no: int
    contact_id: int
    campaign_id: int
    call_sid: str | None
    to: str
    from_: str
    status: AttemptStatus
    answered_by: str | None
    duration_s: int | None
    digits: str | None
    error_code: int | None
    error_message: str | None
    metadata: dict[str, str]
    menu_action: str | None = None
    recording_url: str | None = None
    recording_duration_s: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One event ready for the outbox: its id, type and the body exactly as it is sent."""

    event_id: str
    type: EventType
    body: str


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def new_event(type_: EventType, data: dict[str, Any], now: datetime) -> Event:
    """An event with a fresh id, its body serialised once (the bytes that are signed)."""
    event_id = "evt_" + uuid.uuid4().hex
    created = _iso(now)
    body = json.dumps(
        {"id": event_id, "type": type_.value, "created": created, "data": data},
        separators=(",", ":"),
    )
    return Event(event_id, type_, body)


def attempt_events(end: AttemptEnd, step: JobStep, now: datetime) -> list[Event]:
    """`call.completed` (and `contact.completed` when the contact is final) for an attempt
    whose contact takes `step`; nothing for an attempt that never became a call and leaves
    its contact to be dialled again (a throttled or paused create: no call happened)."""
    final = step.status in FINAL_CONTACT
    if end.status is AttemptStatus.NOT_PLACED and not final:
        return []
    outcome = step.outcome.value if step.outcome else None
    call = {
        "call_id": end.contact_id,
        "contact_id": end.contact_id,
        "attempt_id": end.attempt_id,
        "attempt_no": end.attempt_no,
        "campaign_id": end.campaign_id,
        "call_sid": end.call_sid,
        "to": end.to,
        "from": end.from_,
        "status": end.status.value,
        "outcome": outcome,
        "answered_by": end.answered_by,
        "duration_s": end.duration_s,
        "digits": end.digits,
        "menu_action": end.menu_action,
        "recording_url": end.recording_url,
        "recording_duration_s": end.recording_duration_s,
        "error_code": end.error_code,
        "error_message": end.error_message,
        "contact_done": final,
        "contact_status": step.status.value,
        "next_attempt_at": _iso(step.next_due_at) if not final else None,
        "metadata": end.metadata,
    }
    events = [new_event(EventType.CALL_COMPLETED, call, now)]
    if final:
        contact = {
            "call_id": end.contact_id,
            "contact_id": end.contact_id,
            "campaign_id": end.campaign_id,
            "to": end.to,
            "status": step.status.value,
            "outcome": outcome,
            "attempts": step.attempt_count,
            "last_attempt_id": end.attempt_id,
            "menu_action": end.menu_action,
            "metadata": end.metadata,
        }
        events.append(new_event(EventType.CONTACT_COMPLETED, contact, now))
    return events


def answered_event(end: AttemptEnd, now: datetime) -> Event:
    """`call.answered` for an attempt whose call was just answered (`end` read as the call
    stands: its status `in-progress`, or already ended when both events came together)."""
    data = {
        "call_id": end.contact_id,
        "contact_id": end.contact_id,
        "attempt_id": end.attempt_id,
        "attempt_no": end.attempt_no,
        "campaign_id": end.campaign_id,
        "call_sid": end.call_sid,
        "to": end.to,
        "from": end.from_,
        "answered_by": end.answered_by,
        "metadata": end.metadata,
    }
    return new_event(EventType.CALL_ANSWERED, data, now)
