"""Provider callbacks: store each raw event once, then apply it through the state machine.

Twilio delivers status callbacks at least once, in no promised order, and retries a
delivery that failed (connection overrides `#rc`/`#rp`). So the raw event is inserted with
`ON CONFLICT DO NOTHING` on (call sid, kind, status, `SequenceNumber`); a duplicate changes
nothing, and `dialer.calls.apply_event` ignores stale events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from dialer.calls import CallEvent, apply_event
from dialer.errors import DialerError, NotFoundError
from dialer.leases import finish_call
from dialer.runtime import Runtime
from models import AttemptStatus, CallAttempt, ProviderEvent, transaction, utcnow

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
    """What one callback did: stored (False for a duplicate) and whether the call ended."""

    stored: bool
    ended: bool = False


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


def record_callback(
    runtime: Runtime, attempt_id: int, kind: CallbackKind, params: Mapping[str, str]
) -> CallbackResult:
    """Store and apply one verified callback for attempt `attempt_id`.

    On a terminal event the contact's next step is decided and, after commit, the lease is
    released and the pacer woken.

    Raises:
        MalformedCallbackError: see `parse_event`.
        NotFoundError: no attempt has that id.
        sqlalchemy.exc.OperationalError: the database is unreachable (answer 503: Twilio
            retries, and nothing was written).
    """
    event = parse_event(kind, params)
    with transaction(runtime.settings.database_url) as session:
        attempt = session.scalars(
            select(CallAttempt).where(CallAttempt.id == attempt_id).with_for_update()
        ).one_or_none()
        if attempt is None:
            raise NotFoundError("attempt_not_found", f"no call attempt {attempt_id}")
        stored = session.execute(
            insert(ProviderEvent)
            .values(
                attempt_id=attempt_id,
                call_sid=event.call_sid,
                kind=kind.value,
                call_status=params.get("CallStatus", "") if kind is CallbackKind.STATUS else kind.value,
                sequence_number=event.sequence,
                payload=dict(params),
            )
            .on_conflict_do_nothing()
            .returning(ProviderEvent.id)
        ).scalar_one_or_none()
        if stored is None:
            return CallbackResult(stored=False)
        if attempt.call_sid not in (None, event.call_sid):
            log.warning("callback_sid_mismatch", attempt_id=attempt_id, call_sid=event.call_sid)
            return CallbackResult(stored=True)
        if kind is CallbackKind.GATHER:
            attempt.digits = (params.get("Digits") or "")[:8] or None
        ended = apply_event(attempt, event)
        if ended:
            finish_call(session, runtime, attempt)
        return CallbackResult(stored=True, ended=ended)
