"""Provider callbacks: store each raw event once, then apply it through the state machine.

Twilio delivers status callbacks at least once, in no promised order, and retries a
delivery that failed (connection overrides `#rc`/`#rp`). So the raw event is inserted with
`ON CONFLICT DO NOTHING` on (call sid, kind, status, `SequenceNumber`); a duplicate changes
nothing, and `dialer.calls.apply_event` ignores stale events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import psycopg
import structlog
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from dialer.calls import MACHINE_ANSWERS, CallEvent, apply_event, is_terminal
from dialer.dispatch.attempt_end import EndedAttempt, decide
from dialer.errors import DialerError, NotFoundError
from dialer.runtime import Runtime
from dialer.webhooks.outbox import record_attempt_end_async
from dialer.windows import ContactSchedule
from models import AttemptStatus, CampaignStatus, EndReason, MachineAction, utcnow
from models.asyncdb import AsyncPool, transaction

log = structlog.get_logger(__name__)

_CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")
_PROVIDER_STATUSES = {
    s.value: s
    for s in AttemptStatus
    if s not in (AttemptStatus.DIALING, AttemptStatus.PLACING, AttemptStatus.NOT_PLACED)
}


class CallbackKind(StrEnum):
    STATUS = "status"
    """A call progress event (`StatusCallback`)."""
    AMD = "amd"
    """The asynchronous answering machine detection result (`AsyncAmdStatusCallback`)."""
    GATHER = "gather"
    """The DTMF digits gathered after the message (`<Gather action=...>`)."""


class MalformedCallbackError(DialerError):
    """The callback's body lacks or garbles a field Twilio always sends."""

    def __init__(self, message: str) -> None:
        super().__init__("malformed_callback", message)


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """What one callback did: stored (False for a duplicate), whether the call ended,
    whether AMD just found a machine on a call whose campaign hangs up on machines (the
    caller then asks the provider to end the call), and whether it revealed a late call:
    a call made for an attempt already given up (the caller then has it adopted or hung
    up, `dialer.dispatch.dialing.resolve_late_call`)."""

    stored: bool
    ended: bool = False
    hang_up_machine: bool = False
    late_call: str | None = None
    """The sid of a call made for an attempt already given up (`not-placed`)."""


def parse_event(kind: CallbackKind, params: Mapping[str, str]) -> CallEvent:
    """Parse a Twilio callback body (form fields) into a `CallEvent`.

    Raises:
        MalformedCallbackError: `CallSid` missing or not a call sid; for status callbacks,
            an unknown `CallStatus`; a non-integer `SequenceNumber` or `CallDuration`; an
            unparseable `Timestamp` (RFC 2822).
    """
    sid = params.get("CallSid", "")
    if not _CALL_SID.match(sid):
        raise MalformedCallbackError("CallSid is missing or is not a call sid")
    status: AttemptStatus | None = None
    if kind is CallbackKind.STATUS:
        raw = params.get("CallStatus", "")
        if raw not in _PROVIDER_STATUSES:
            raise MalformedCallbackError(f"unknown CallStatus {raw!r}")
        status = _PROVIDER_STATUSES[raw]
    try:
        sequence = int(params.get("SequenceNumber", "-1"))
        duration = int(params["CallDuration"]) if params.get("CallDuration") else None
    except ValueError as error:
        raise MalformedCallbackError("SequenceNumber and CallDuration must be integers") from error
    return CallEvent(
        status=status,
        sequence=sequence,
        timestamp=_timestamp(params.get("Timestamp")),
        call_sid=sid,
        answered_by=params.get("AnsweredBy") or None,
        duration_s=duration,
    )


def _timestamp(raw: str | None) -> datetime:
    if not raw:
        return utcnow()
    try:
        return parsedate_to_datetime(raw)
    except (TypeError, ValueError) as error:
        raise MalformedCallbackError(f"Timestamp {raw!r} is not an RFC 2822 date") from error


_LOCK_AND_STORE = """
WITH attempt AS (
    SELECT a.id, a.job_id, a.campaign_id, a.account_id, a.status, a.call_sid, a.answered_by,
           a.digits, a.last_sequence, a.placed_at, a.answered_at, a.ended_at, a.duration_s,
           a.error_code, a.error_message, a.end_reason, j.attempt_count, j.dial_error_count,
           c.status AS campaign_status, c.max_attempts, c.dial_retries, c.retry_policy,
           c.caller_id_id,
           COALESCE(j.machine_detection, c.machine_detection) AS machine_detection,
           COALESCE(j.machine_action, c.machine_action) AS machine_action,
           j.zones, j.region, j.subdivision, j.call_before, c.window_start, c.window_end,
           c.window_days, c.holidays, c.skip_public_holidays,
           a.attempt_no, a.phone_e164, a.from_e164, j.metadata,
           coalesce(j.webhook_url, (SELECT w.webhook_url FROM accounts w WHERE w.id = a.account_id))
               AS webhook_url
    FROM call_attempts a
    JOIN call_jobs j ON j.id = a.job_id
    JOIN campaigns c ON c.id = a.campaign_id
    WHERE a.id = %(attempt_id)s
    FOR UPDATE OF a, j
), stored AS (
    INSERT INTO provider_events (attempt_id, call_sid, kind, call_status, sequence_number, payload)
    SELECT id, %(call_sid)s, %(kind)s, %(call_status)s, %(sequence)s, %(payload)s FROM attempt
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT attempt.*, EXISTS (SELECT FROM stored) AS stored FROM attempt
"""
"""One round trip: lock the attempt and its job (in that order, as `finish_call` does),
then store the raw event once. The attempt is locked before the event row's foreign key
takes its share lock, so two events of one call serialise instead of deadlocking. The
select's last three lines are what the webhook events report (`dialer.webhooks.outbox`)."""

_UPDATE_ATTEMPT = """
UPDATE call_attempts
SET status = %(status)s, call_sid = %(call_sid)s, answered_by = %(answered_by)s,
    digits = %(digits)s, last_sequence = %(last_sequence)s, answered_at = %(answered_at)s,
    ended_at = %(ended_at)s, duration_s = %(duration_s)s, updated_at = now()
WHERE id = %(id)s
"""

_FINISH = """
WITH attempt AS (
    UPDATE call_attempts
    SET status = %(status)s, call_sid = %(call_sid)s, answered_by = %(answered_by)s,
        digits = %(digits)s, last_sequence = %(last_sequence)s, answered_at = %(answered_at)s,
        ended_at = %(ended_at)s, duration_s = %(duration_s)s, updated_at = now()
    WHERE id = %(id)s
)
UPDATE call_jobs
SET outcome = %(outcome)s, status = %(job_status)s,
    next_due_at = coalesce(%(next_due_at)s, next_due_at), updated_at = now()
WHERE id = %(job_id)s
"""
"""The attempt's new state and the contact's next step, as `attempt_end.decide` gives it."""

_APPLIED = (
    "status",
    "call_sid",
    "answered_by",
    "digits",
    "last_sequence",
    "answered_at",
    "ended_at",
    "duration_s",
)
"""The attempt columns a callback may change (`apply_event`, and `digits` for Gather)."""


_ROW = (
    "status",
    "call_sid",
    "answered_by",
    "digits",
    "last_sequence",
    "placed_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "error_code",
    "error_message",
    "end_reason",
)


@dataclass(slots=True)
class AttemptRow:
    """An attempt as the fast path reads it: the state machine's `AttemptState`, in plain
    values (no ORM object, no session)."""

    status: AttemptStatus
    call_sid: str | None
    answered_by: str | None
    digits: str | None
    last_sequence: int
    placed_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    duration_s: int | None
    error_code: int | None
    error_message: str | None
    end_reason: EndReason | None

    @classmethod
    def read(cls, row: Mapping[str, Any]) -> AttemptRow:
        """From `_LOCK_AND_STORE`'s row (statuses arrive as their text values)."""
        fields = {column: row[column] for column in _ROW}
        reason = row["end_reason"]
        return cls(
            **{
                **fields,
                "status": AttemptStatus(row["status"]),
                "end_reason": EndReason(reason) if reason else None,
            }
        )

    def applied(self) -> dict[str, object]:
        """The columns a callback may change, as `_UPDATE_ATTEMPT` writes them."""
        return {column: getattr(self, column) for column in _APPLIED}


async def record_callback(
    pool: AsyncPool,
    runtime: Runtime,
    attempt_id: int,
    kind: CallbackKind,
    params: Mapping[str, str],
) -> CallbackResult:
    """Store and apply one verified callback for attempt `attempt_id`.

    The stored event goes through the state machine (`dialer.calls.apply_event`) on the
    attempt's current row; on a terminal event the contact's next step is decided as
    `dialer.dispatch.attempt_end.decide` decides it and, after commit,
    the lease is released and the pacer woken. Two round trips and a commit; one round trip
    and a commit for a duplicate.

    A connection that broke is retried once on a new one: nothing was committed, or, if
    the commit itself was lost in flight, the retry finds the event stored and changes
    nothing.

    Raises:
        MalformedCallbackError: see `parse_event`.
        NotFoundError: no attempt has that id.
        psycopg.OperationalError: the database is unreachable (answer 503: Twilio retries,
            and nothing was written).
    """
    event = parse_event(kind, params)
    values = {
        "attempt_id": attempt_id,
        "call_sid": event.call_sid,
        "kind": kind.value,
        "call_status": params.get("CallStatus", "") if kind is CallbackKind.STATUS else kind.value,
        "sequence": event.sequence,
        "payload": Jsonb(dict(params)),
    }
    for retry in (True, False):
        try:
            return await _record(pool, runtime, attempt_id, kind, params, event, values)
        except PoolTimeout:
            raise  # PostgreSQL is unreachable: answer now, Twilio retries the delivery
        except psycopg.OperationalError:
            if not retry:
                raise
            log.warning("callback_db_retry", attempt_id=attempt_id)
    raise AssertionError("unreachable")


async def _record(
    pool: AsyncPool,
    runtime: Runtime,
    attempt_id: int,
    kind: CallbackKind,
    params: Mapping[str, str],
    event: CallEvent,
    values: dict[str, object],
) -> CallbackResult:
    hooks: list[Callable[[], object]] = []
    async with transaction(pool, hooks) as conn:
        cursor = await conn.execute(_LOCK_AND_STORE, values)
        row = await cursor.fetchone()
        if row is None:
            raise NotFoundError("attempt_not_found", f"no call attempt {attempt_id}")
        if not row["stored"]:
            return CallbackResult(stored=False)
        if row["call_sid"] not in (None, event.call_sid):
            log.warning("callback_sid_mismatch", attempt_id=attempt_id, call_sid=event.call_sid)
            return CallbackResult(stored=True)
        if row["status"] == AttemptStatus.NOT_PLACED and row["call_sid"] is None:
            log.warning("late_call_seen", attempt_id=attempt_id, call_sid=event.call_sid)
            return CallbackResult(stored=True, late_call=event.call_sid)
        attempt = AttemptRow.read(row)
        before = attempt.applied()
        if kind is CallbackKind.GATHER:
            attempt.digits = (params.get("Digits") or "")[:8] or None
        ended = apply_event(attempt, event)
        after = attempt.applied()
        if ended:
            decision = decide(
                EndedAttempt(
                    attempt_id=attempt_id,
                    account_id=row["account_id"],
                    campaign_id=row["campaign_id"],
                    caller_id_id=row["caller_id_id"],
                    status=attempt.status,
                    answered_by=attempt.answered_by,
                    end_reason=attempt.end_reason,
                    attempt_count=row["attempt_count"],
                    dial_error_count=row["dial_error_count"],
                    campaign_status=CampaignStatus(row["campaign_status"]),
                    max_attempts=row["max_attempts"],
                    dial_retries=row["dial_retries"],
                    retry_policy=row["retry_policy"],
                    schedule=ContactSchedule.from_row(row),
                ),
                runtime.clock(),
            )
            step = decision.step
            await conn.execute(
                _FINISH,
                {
                    **after,
                    "id": attempt_id,
                    "job_id": row["job_id"],
                    "outcome": step.outcome.value if step.outcome else None,
                    "job_status": step.status.value,
                    "next_due_at": step.next_due_at,
                },
            )
            release = decision.release
            hooks.append(
                lambda: runtime.pool.release(release.member, release.scope_keys, release.wake_key)
            )
            await record_attempt_end_async(conn, row, attempt, step, hooks, utcnow())
        elif after != before:
            await conn.execute(_UPDATE_ATTEMPT, {**after, "id": attempt_id})
    machine_found = before["answered_by"] is None and attempt.answered_by in MACHINE_ANSWERS
    hang_up = (
        machine_found
        and not is_terminal(attempt.status)
        and row["machine_detection"]
        and row["machine_action"] == MachineAction.HANG_UP
    )
    return CallbackResult(stored=True, ended=ended, hang_up_machine=hang_up)
