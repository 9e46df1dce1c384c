"""Provider callbacks: store each raw event once, then apply it through the state machine.

Twilio delivers status callbacks at least once, in no promised order, and retries a
delivery that failed (connection overrides `#rc`/`#rp`). So the raw event is inserted with
`ON CONFLICT DO NOTHING` on (call sid, kind, status, `SequenceNumber`); a duplicate changes
nothing, and `dialer.calls.apply_event` ignores stale events.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from functools import partial
from typing import Any

import psycopg
import structlog
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from dialer.calls import MACHINE_ANSWERS, CallEvent, apply_event, is_terminal
from dialer.dispatch.attempt_end import EndDecision, EndedAttempt, decide
from dialer.dispatch.dialing import gather_url
from dialer.errors import DialerError, NotFoundError
from dialer.menu import KeyReply, Menu, MenuAction, reply_twiml
from dialer.metrics import CALLBACK_APPLY_FAILURES, CALLBACK_BATCH_SIZE
from dialer.providers.twiml import render_message
from dialer.runtime import Runtime
from dialer.webhooks.outbox import record_answered_async, record_attempt_end_async
from dialer.windows import ContactSchedule
from models import (
    CANCEL_END_REASONS,
    AttemptStatus,
    CampaignStatus,
    EndReason,
    MachineAction,
    utcnow,
)
from models.asyncdb import AsyncConnection, AsyncPool, transaction

log = structlog.get_logger(__name__)

_CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")
_INT4_MAX = 2**31 - 1
"""The largest `SequenceNumber` and `CallDuration` the columns hold (PostgreSQL integer)."""
_ANSWERED_BY_MAX = 32
"""`AnsweredBy`'s column width; Twilio's longest value, `machine_end_silence`, has 19."""
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
    """The key pressed at the menu (`<Gather action=...>`, `dialer.menu`)."""
    RECORDING = "recording"
    """The call's recording is ready (`RecordingStatusCallback`)."""


VOICEMAIL_ANSWERS = frozenset({"machine_end_beep", "machine_end_silence", "machine_end_other"})
"""`AnsweredBy` values of `DetectMessageEnd` after which the voicemail message is left: the
machine's greeting has ended (beep, silence, or another end), Twilio AMD."""

_RECORDING_SID = re.compile(r"^RE[0-9a-f]{32}$")
_RECORDING_URL_MAX = 512
_RECORDING_STATUSES = frozenset(
    {"in-progress", "paused", "stopped", "processing", "completed", "absent"}
)
"""Twilio `RecordingStatus` values (`call_recording_enum_status` in Twilio's OpenAPI)."""


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
    hang_up_canceled: bool = False
    """The callback tied its call to an attempt whose campaign was cancelled with hang-up,
    or which was itself cancelled, while the call was being placed
    (`campaigns.lifecycle.hang_up_on_cancel`, `campaigns.calls.cancel_call`): the caller
    asks the provider to end it (the cancel's reason stays the attempt's)."""
    late_call: str | None = None
    """The sid of a call made for an attempt already given up (`not-placed`)."""
    reply: str | None = None
    """The TwiML a gather callback answers with (`dialer.menu.reply_twiml`)."""
    drop_voicemail: bool = False
    """AMD found the end of a machine's greeting on a call with a voicemail message: the
    caller has the message left (`dialer.dispatch.voicemail`)."""
    apply_failed: bool = False
    """Stored, but the state machine failed on it (logged, counted in
    `dialer_provider_callback_apply_failures`): its attempt is as it was, and the reaper
    applies the call's state from the provider later (`dialer.dispatch.reaper`)."""


def parse_event(kind: CallbackKind, params: Mapping[str, str]) -> CallEvent:
    """Parse a Twilio callback body (form fields) into a `CallEvent`.

    Raises:
        MalformedCallbackError: a field with a NUL character; `CallSid` missing or not a
            call sid; for status callbacks, an unknown `CallStatus`; a `SequenceNumber` or
            `CallDuration` that is not an integer or is out of range (a negative duration,
            anything past 2**31 - 1); an `AnsweredBy` over 32 characters; an unparseable
            `Timestamp` (RFC 2822).
    """
    if any("\x00" in value for value in params.values()):
        raise MalformedCallbackError("a field holds a NUL character")
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
    if not -1 <= sequence <= _INT4_MAX or not 0 <= (duration or 0) <= _INT4_MAX:
        raise MalformedCallbackError("SequenceNumber or CallDuration is out of range")
    answered_by = params.get("AnsweredBy") or None
    if answered_by is not None and len(answered_by) > _ANSWERED_BY_MAX:
        raise MalformedCallbackError("AnsweredBy is longer than any Twilio value")
    if kind is CallbackKind.RECORDING:
        _check_recording(params)
    return CallEvent(
        status=status,
        sequence=sequence,
        timestamp=_timestamp(params.get("Timestamp")),
        call_sid=sid,
        answered_by=answered_by,
        duration_s=duration,
    )


def _check_recording(params: Mapping[str, str]) -> None:
    """A recording callback's fields: `RecordingSid` (RE + 32 hex), `RecordingStatus` (a
    Twilio value), and on `completed`, `RecordingUrl` (http(s), at most 512 characters)
    and `RecordingDuration` (whole seconds, 0 to 2**31 - 1).

    Raises:
        MalformedCallbackError: any of them missing or garbled.
    """
    if not _RECORDING_SID.match(params.get("RecordingSid", "")):
        raise MalformedCallbackError("RecordingSid is missing or is not a recording sid")
    status = params.get("RecordingStatus", "")
    if status not in _RECORDING_STATUSES:
        raise MalformedCallbackError(f"unknown RecordingStatus {status[:32]!r}")
    if status != "completed":
        return
    url = params.get("RecordingUrl", "")
    if len(url) > _RECORDING_URL_MAX or not url.startswith(("https://", "http://")):
        raise MalformedCallbackError("RecordingUrl is missing or is not an http(s) URL")
    duration = params.get("RecordingDuration", "")
    if not duration.isdigit() or int(duration) > _INT4_MAX:
        raise MalformedCallbackError("RecordingDuration is not a whole number of seconds")


def _timestamp(raw: str | None) -> datetime:
    if not raw:
        return utcnow()
    try:
        return parsedate_to_datetime(raw)
    except (TypeError, ValueError) as error:
        raise MalformedCallbackError(f"Timestamp {raw!r} is not an RFC 2822 date") from error


_LOCK_AND_STORE = """
WITH incoming AS (
    SELECT * FROM unnest(
        %(attempt_ids)s::bigint[], %(call_sids)s::text[], %(kinds)s::text[],
        %(call_statuses)s::text[], %(sequences)s::integer[], %(payloads)s::jsonb[],
        %(ordinals)s::integer[]
    ) AS i(attempt_id, call_sid, kind, call_status, sequence_number, payload, ordinal)
), attempt AS (
    SELECT a.id, a.job_id, a.campaign_id, a.account_id, a.status, a.call_sid, a.answered_by,
           a.digits, a.last_sequence, a.placed_at, a.answered_at, a.ended_at, a.duration_s,
           a.error_code, a.error_message, a.end_reason, a.menu_action, a.recording_sid,
           a.recording_url, a.recording_duration_s, j.attempt_count, j.dial_error_count,
           c.status AS campaign_status, c.max_attempts, c.dial_retries, c.retry_policy,
           COALESCE(j.machine_detection, c.machine_detection) AS machine_detection,
           COALESCE(j.machine_action, c.machine_action) AS machine_action,
           j.zones, j.region, j.subdivision, j.call_before, c.window_start, c.window_end,
           c.window_days, c.holidays, c.skip_public_holidays,
           coalesce(j.menu, c.menu) AS menu, c.voicemail_message IS NOT NULL AS voicemail,
           coalesce(j.message, c.message) AS message_template, j.variables,
           a.attempt_no, a.phone_e164, a.from_e164, j.metadata,
           coalesce(j.webhook_url, (SELECT w.webhook_url FROM accounts w WHERE w.id = a.account_id))
               AS webhook_url
    FROM call_attempts a
    JOIN call_jobs j ON j.id = a.job_id
    JOIN campaigns c ON c.id = a.campaign_id
    WHERE a.id = ANY(%(attempt_ids)s::bigint[])
    ORDER BY a.id
    FOR UPDATE OF a, j
), stored AS (
    INSERT INTO provider_events (attempt_id, call_sid, kind, call_status, sequence_number, payload)
    SELECT i.attempt_id, i.call_sid, i.kind, i.call_status, i.sequence_number, i.payload
    FROM incoming i JOIN attempt ON attempt.id = i.attempt_id
    ORDER BY i.ordinal
    ON CONFLICT DO NOTHING
    RETURNING attempt_id, call_sid, kind, call_status, sequence_number
)
SELECT attempt.*, ARRAY(
    SELECT min(i.ordinal) FROM stored s
    JOIN incoming i USING (attempt_id, call_sid, kind, call_status, sequence_number)
    WHERE s.attempt_id = attempt.id
    GROUP BY s.call_sid, s.kind, s.call_status, s.sequence_number
) AS stored, ARRAY(
    SELECT i.ordinal FROM incoming i
    WHERE i.attempt_id = attempt.id AND EXISTS (
        SELECT FROM call_attempts o WHERE o.call_sid = i.call_sid AND o.id <> attempt.id
    )
) AS foreign_sids
FROM attempt
"""
"""One round trip for a batch of callbacks: lock their attempts and jobs (in attempt id
order, each attempt before its job, as `finish_call` does, so two batches and the ORM path
never wait on each other in a cycle), then store each raw event once. The attempts are
locked before the events' foreign key takes its share lock, so two events of one call
serialise instead of deadlocking. Each attempt row carries `stored`: the ordinals (the
callback's index in the batch) of its events that were new; an event that was already
stored, or repeated within the batch, is stored once, by its first ordinal;
`foreign_sids`: the ordinals of its events whose call sid is another attempt's. The select's
last lines (`attempt_no` on) are what the webhook events report
(`dialer.webhooks.outbox`)."""

_UPDATE_ATTEMPTS = """
UPDATE call_attempts a
SET status = v.status::attempt_status, call_sid = v.call_sid, answered_by = v.answered_by,
    digits = v.digits, last_sequence = v.last_sequence, answered_at = v.answered_at,
    ended_at = v.ended_at, duration_s = v.duration_s, menu_action = v.menu_action,
    recording_sid = v.recording_sid, recording_url = v.recording_url,
    recording_duration_s = v.recording_duration_s, updated_at = now()
FROM unnest(
    %(id)s::bigint[], %(status)s::text[], %(call_sid)s::text[], %(answered_by)s::text[],
    %(digits)s::text[], %(last_sequence)s::integer[], %(answered_at)s::timestamptz[],
    %(ended_at)s::timestamptz[], %(duration_s)s::integer[], %(menu_action)s::text[],
    %(recording_sid)s::text[], %(recording_url)s::text[], %(recording_duration_s)s::integer[]
) AS v(id, status, call_sid, answered_by, digits, last_sequence, answered_at, ended_at,
       duration_s, menu_action, recording_sid, recording_url, recording_duration_s)
WHERE a.id = v.id
"""
"""The attempts' new states, one statement for the batch (so the counting triggers of
migration 0009 run once per batch, not once per callback)."""

_FINISH = f"""
WITH attempts AS ({_UPDATE_ATTEMPTS})
UPDATE call_jobs j
SET outcome = v.outcome::outcome, status = v.status::job_status,
    next_due_at = coalesce(v.next_due_at, j.next_due_at), updated_at = now()
FROM unnest(
    %(job_id)s::bigint[], %(outcome)s::text[], %(job_status)s::text[],
    %(next_due_at)s::timestamptz[]
) AS v(id, outcome, status, next_due_at)
WHERE j.id = v.id
"""  # noqa: S608 (built from this module's constants)
"""The attempts' new states and, for those that ended, their contacts' next steps as
`attempt_end.decide` gives them: one statement."""

_APPLIED = (
    "status",
    "call_sid",
    "answered_by",
    "digits",
    "last_sequence",
    "answered_at",
    "ended_at",
    "duration_s",
    "menu_action",
    "recording_sid",
    "recording_url",
    "recording_duration_s",
)
"""The attempt columns a callback may change (`apply_event`; `digits` and `menu_action`
for Gather; the recording's for a recording callback)."""


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
    "menu_action",
    "recording_sid",
    "recording_url",
    "recording_duration_s",
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
    menu_action: str | None
    recording_sid: str | None
    recording_url: str | None
    recording_duration_s: int | None

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
        """The columns a callback may change, as `_UPDATE_ATTEMPTS` writes them."""
        return {column: getattr(self, column) for column in _APPLIED}


@dataclass(frozen=True, slots=True)
class Callback:
    """One verified callback to apply: the attempt it is for (the id in its URL), its kind,
    its form fields as Twilio posted them, and the event parsed from them."""

    attempt_id: int
    kind: CallbackKind
    params: Mapping[str, str]
    event: CallEvent
    retried: bool = False
    """A gather callback after an invalid key was pressed once (`dialer.menu`)."""

    @classmethod
    def parse(
        cls,
        attempt_id: int,
        kind: CallbackKind,
        params: Mapping[str, str],
        *,
        retried: bool = False,
    ) -> Callback:
        """Raises `MalformedCallbackError`: see `parse_event`. A gather callback's event
        is numbered by its round (0, or 1 once `retried`), so the key pressed after an
        invalid one is stored as an event of its own."""
        event = parse_event(kind, params)
        if kind is CallbackKind.GATHER:
            event = replace(event, sequence=int(retried))
        return cls(attempt_id, kind, params, event, retried)

    @property
    def key(self) -> str:
        """The event's `call_status` in its stored key: the status of a status callback,
        the key pressed of a gather callback (a repeat and then a confirm are two events),
        the recording's status of a recording callback, else the kind."""
        match self.kind:
            case CallbackKind.STATUS:
                return self.params.get("CallStatus", "")
            case CallbackKind.GATHER:
                return "gather:" + (self.params.get("Digits") or "")[:8]
            case CallbackKind.RECORDING:
                return self.params.get("RecordingStatus", "")
            case _:
                return self.kind.value


async def record_callbacks(
    pool: AsyncPool, runtime: Runtime, callbacks: Sequence[Callback]
) -> list[CallbackResult | Exception]:
    """Store and apply callbacks (in their order) in one transaction; one result per
    callback, in the same order: what it did, or the error that is its answer alone
    (`NotFoundError` for an attempt id that does not exist; a database error that only it
    met), the others applied all the same.

    Each stored event goes through the state machine (`dialer.calls.apply_event`) on its
    attempt's current state, the events of one attempt in order; on a terminal event the
    contact's next step is decided as `dialer.dispatch.attempt_end.decide` decides it and,
    after commit, the lease is released and the pacer woken. Three round trips whatever the
    batch's size: lock and store, write, commit (two for duplicates only). One commit, one
    WAL flush, and one run of the counting triggers for the whole batch is what makes a
    busy webhook fast (`CallbackBatcher`).

    A connection that broke, or a deadlock, is retried once on a new transaction: nothing
    was committed, or, if the commit itself was lost in flight, the retry finds the events
    stored and changes nothing. Any other error of the batch (the database refused an event)
    is retried one callback per transaction, so a bad event fails only its own request.

    A callback the state machine fails on (an exception while applying it, e.g. its
    campaign's stored retry policy no longer reads) is isolated without retrying the batch:
    its raw event is stored, its attempt keeps the state it had, the failure is logged with
    its traceback and counted (`dialer_provider_callback_apply_failures`), and it is
    answered like the others (`apply_failed`), not with a 5xx: Twilio's retry of the same
    event would find it stored and change nothing. The call's state is applied later from
    the provider, by the reaper's status poll, once what made it fail is repaired.

    Raises:
        psycopg.OperationalError: the database is unreachable (answer 503: Twilio retries,
            and nothing was written).
    """
    for retry in (True, False):
        try:
            return await _record(pool, runtime, callbacks)
        except PoolTimeout:
            raise  # PostgreSQL is unreachable: answer now, Twilio retries the delivery
        except psycopg.OperationalError:
            if not retry:
                raise
            log.warning("callback_db_retry", attempts=[c.attempt_id for c in callbacks])
        except Exception as error:  # the database refused an event, or a bug met one
            if len(callbacks) == 1:
                log.error("callback_refused", attempt_id=callbacks[0].attempt_id, exc_info=True)
                return [error]
            log.warning("callback_batch_split", size=len(callbacks), error=str(error))
            results: list[CallbackResult | Exception] = []
            for callback in callbacks:
                results.extend(await record_callbacks(pool, runtime, [callback]))
            return results
    raise AssertionError("unreachable")


@dataclass(slots=True)
class _Applied:
    """One attempt of a batch: its locked row, its state as the batch's events leave it,
    and what ending it decided."""

    row: Mapping[str, Any]
    attempt: AttemptRow
    before: dict[str, object]
    decision: EndDecision | None = None


async def _record(
    pool: AsyncPool, runtime: Runtime, callbacks: Sequence[Callback]
) -> list[CallbackResult | Exception]:
    hooks: list[Callable[[], object]] = []
    results: list[CallbackResult | Exception] = []
    async with transaction(pool, hooks) as conn:
        cursor = await conn.execute(_LOCK_AND_STORE, _incoming(callbacks))
        rows = {row["id"]: row for row in await cursor.fetchall()}
        stored = {ordinal for row in rows.values() for ordinal in row["stored"]}
        foreign = {ordinal for row in rows.values() for ordinal in row["foreign_sids"]}
        applied: dict[int, _Applied] = {}
        sids: dict[str, int] = {}  # call sid -> the attempt it belongs to in this batch
        for ordinal, callback in enumerate(callbacks):
            row = rows.get(callback.attempt_id)
            if row is None:
                results.append(
                    NotFoundError("attempt_not_found", f"no call attempt {callback.attempt_id}")
                )
                continue
            if ordinal not in stored:
                # A gather delivered again is answered as the first time.
                reply = _key_reply(row, callback, runtime).twiml if _is_gather(callback) else None
                results.append(CallbackResult(stored=False, reply=reply))
                continue
            if callback.attempt_id not in applied:
                attempt = AttemptRow.read(row)
                applied[callback.attempt_id] = _Applied(row, attempt, attempt.applied())
            sid, state = callback.event.call_sid, applied[callback.attempt_id]
            if ordinal in foreign or sids.get(sid, callback.attempt_id) != callback.attempt_id:
                # Another attempt's call: applying it would break the call sid's uniqueness.
                log.warning("callback_sid_taken", attempt_id=callback.attempt_id, call_sid=sid)
                results.append(CallbackResult(stored=True))
                continue
            before = replace(state.attempt), state.decision
            try:
                results.append(_apply(state, callback, runtime))
            except Exception:  # isolate: one callback's failure is not the batch's
                # Its raw event is stored; its attempt keeps the state it had before it.
                state.attempt, state.decision = before
                log.error("callback_apply_failed", attempt_id=callback.attempt_id, exc_info=True)
                CALLBACK_APPLY_FAILURES.inc()
                results.append(CallbackResult(stored=True, apply_failed=True))
                continue
            if state.attempt.call_sid == sid:
                sids[sid] = callback.attempt_id
        ended = [a for a in applied.values() if a.decision is not None]
        changed = [a for a in applied.values() if a.attempt.applied() != a.before]
        await _list_opt_outs(conn, [a for a in changed if _opted_out(a)])
        now = utcnow()
        answered = [
            (a.row, a.attempt)
            for a in changed
            if a.before["answered_at"] is None and a.attempt.answered_at is not None
        ]
        await record_answered_async(conn, answered, hooks, now)
        if ended:
            await conn.execute(_FINISH, {**_columns(changed), **_steps(ended)})
        elif changed:
            await conn.execute(_UPDATE_ATTEMPTS, _columns(changed))
        releases = []
        for a in ended:
            assert a.decision is not None
            release = a.decision.release
            releases.append((release.member, release.scope_keys, release.wake_key))
            await record_attempt_end_async(conn, a.row, a.attempt, a.decision.step, hooks, now)
        hooks.insert(0, partial(runtime.pool.release_many, releases))
    return results


def _apply(applied: _Applied, callback: Callback, runtime: Runtime) -> CallbackResult:
    """One stored callback through the state machine, on its attempt's state in the batch."""
    attempt, row, event = applied.attempt, applied.row, callback.event
    if attempt.call_sid not in (None, event.call_sid):
        log.warning(
            "callback_sid_mismatch", attempt_id=callback.attempt_id, call_sid=event.call_sid
        )
        return CallbackResult(stored=True)
    if attempt.status == AttemptStatus.NOT_PLACED and attempt.call_sid is None:
        log.warning("late_call_seen", attempt_id=callback.attempt_id, call_sid=event.call_sid)
        return CallbackResult(stored=True, late_call=event.call_sid)
    answered_by = attempt.answered_by
    untied = attempt.call_sid is None
    reply = None
    if _is_gather(callback):
        key = _key_reply(row, callback, runtime)
        attempt.digits = (callback.params.get("Digits") or "")[:8] or None
        if key.action is not None:
            attempt.menu_action = key.action.value
        reply = key.twiml
    if (
        callback.kind is CallbackKind.RECORDING
        and callback.params["RecordingStatus"] == "completed"
    ):
        attempt.recording_sid = callback.params["RecordingSid"]
        attempt.recording_url = callback.params["RecordingUrl"]
        attempt.recording_duration_s = int(callback.params["RecordingDuration"])
    ended = apply_event(attempt, event)
    if ended:
        applied.decision = decide(
            EndedAttempt(
                attempt_id=callback.attempt_id,
                account_id=row["account_id"],
                campaign_id=row["campaign_id"],
                from_e164=row["from_e164"],
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
            runtime.settings.dev_time_scale,
        )
    machine_now = answered_by is None and not is_terminal(attempt.status)
    voicemail = machine_now and row["voicemail"] and attempt.answered_by in VOICEMAIL_ANSWERS
    hang_up = (
        machine_now
        and not voicemail
        and attempt.answered_by in MACHINE_ANSWERS
        and bool(row["machine_detection"])
        and row["machine_action"] == MachineAction.HANG_UP
    )
    canceled = (
        untied and attempt.end_reason in CANCEL_END_REASONS and not is_terminal(attempt.status)
    )
    return CallbackResult(
        stored=True,
        ended=ended,
        hang_up_machine=hang_up,
        hang_up_canceled=canceled,
        reply=reply,
        drop_voicemail=voicemail,
    )


def _is_gather(callback: Callback) -> bool:
    return callback.kind is CallbackKind.GATHER


def _key_reply(row: Mapping[str, Any], callback: Callback, runtime: Runtime) -> KeyReply:
    """What the key a gather callback carries does on its call (`dialer.menu.reply_twiml`):
    the campaign's menu as it stands, the contact's message as it was said."""
    message = render_message(row["message_template"], row["variables"] or {})
    return reply_twiml(
        Menu.read(row["menu"]),
        callback.params.get("Digits") or "",
        message,
        gather_url(runtime, callback.attempt_id),
        retried=callback.retried,
    )


def _opted_out(applied: _Applied) -> bool:
    return (
        applied.attempt.menu_action == MenuAction.OPT_OUT
        and applied.before["menu_action"] != MenuAction.OPT_OUT
    )


_OPT_OUT = """
INSERT INTO dnc_entries (account_id, e164, reason, source, campaign_id)
SELECT * FROM unnest(
    %(account_id)s::bigint[], %(e164)s::text[], %(reason)s::text[], %(source)s::text[],
    %(campaign_id)s::bigint[]
)
ON CONFLICT DO NOTHING
"""


async def _list_opt_outs(conn: AsyncConnection, opted_out: list[_Applied]) -> None:
    """List the numbers whose callee pressed the opt-out key on the account's DNC list, in
    the callback's own transaction (source `keypress`, the campaign, now): the pacer's
    claim and `place_call` check the list, so no later call of the account reaches them."""
    if not opted_out:
        return
    rows = [a.row for a in opted_out]
    await conn.execute(
        _OPT_OUT,
        {
            "account_id": [r["account_id"] for r in rows],
            "e164": [r["phone_e164"] for r in rows],
            "reason": ["opted out by keypress"] * len(rows),
            "source": [OPT_OUT_SOURCE] * len(rows),
            "campaign_id": [r["campaign_id"] for r in rows],
        },
    )


OPT_OUT_SOURCE = "keypress"
"""`dnc_entries.source` of a number listed by its callee's opt-out key."""


def _incoming(callbacks: Sequence[Callback]) -> dict[str, list[Any]]:
    """`_LOCK_AND_STORE`'s arrays: one element per callback, its ordinal its index."""
    return {
        "attempt_ids": [c.attempt_id for c in callbacks],
        "call_sids": [c.event.call_sid for c in callbacks],
        "kinds": [c.kind.value for c in callbacks],
        "call_statuses": [c.key for c in callbacks],
        "sequences": [c.event.sequence for c in callbacks],
        "payloads": [Jsonb(dict(c.params)) for c in callbacks],
        "ordinals": list(range(len(callbacks))),
    }


def _columns(changed: list[_Applied]) -> dict[str, list[Any]]:
    """`_UPDATE_ATTEMPTS`' arrays: each changed attempt's id and `_APPLIED` columns."""
    values = [a.attempt.applied() for a in changed]
    columns: dict[str, list[Any]] = {"id": [a.row["id"] for a in changed]}
    for column in _APPLIED:
        columns[column] = [v[column] for v in values]
    return columns


def _steps(ended: list[_Applied]) -> dict[str, list[Any]]:
    """`_FINISH`'s contact arrays: each ended attempt's contact and its next step."""
    steps = {a.row["job_id"]: a.decision.step for a in ended if a.decision is not None}
    return {
        "job_id": list(steps),
        "outcome": [s.outcome.value if s.outcome else None for s in steps.values()],
        "job_status": [s.status.value for s in steps.values()],
        "next_due_at": [s.next_due_at for s in steps.values()],
    }


MAX_BATCH = 64
"""Callbacks applied in one transaction at most (`CallbackBatcher`)."""
BATCHES_IN_FLIGHT = 2
"""Batches one process applies at once (`CallbackBatcher`): while one waits for PostgreSQL
the next is already on its way, so a batch's round trips and commit do not bound the rate."""


@dataclass(slots=True)
class _Waiting:
    callback: Callback
    future: asyncio.Future[CallbackResult]


class CallbackBatcher:
    """Group commit for the webhook: the callbacks one process receives while its batches
    are being applied wait for the next batch, and each request is answered once its batch
    has committed (`record_callbacks`). An idle process applies a lone callback after one
    turn of the event loop (the requests read in the same turn join it); under load a
    batch holds what arrived while the others were applied (up to
    `MAX_BATCH`), so the commits per second stay about constant while the callbacks per
    commit grow, the group commit of a database's own log writer. At most
    `BATCHES_IN_FLIGHT` batches are applied at once, each on its own connection. Two events
    of one call in one batch are applied in the order they arrived; in two batches, the
    later one waits for the earlier one's row lock.
    """

    def __init__(self, pool: AsyncPool, runtime: Runtime) -> None:
        self.pool = pool
        self.runtime = runtime
        self._waiting: list[_Waiting] = []
        self._drainers: set[asyncio.Task[None]] = set()

    async def record(
        self,
        attempt_id: int,
        kind: CallbackKind,
        params: Mapping[str, str],
        *,
        retried: bool = False,
    ) -> CallbackResult:
        """Store and apply one verified callback with whatever else is waiting.

        Raises:
            MalformedCallbackError: see `parse_event` (before anything is queued).
            NotFoundError: no attempt has that id.
            psycopg.Error: the database is unreachable (`psycopg.OperationalError`) or
                refused the event.
        """
        callback = Callback.parse(attempt_id, kind, params, retried=retried)
        future: asyncio.Future[CallbackResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(callback, future))
        # A drainer whose loop found nothing left is done at once, though the callback that
        # forgets it runs later: only the ones not done are still draining.
        if sum(not drainer.done() for drainer in self._drainers) < BATCHES_IN_FLIGHT:
            drainer = asyncio.create_task(self._drain())
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            # One turn of the event loop first: the requests read in the same turn as this
            # one join its batch.
            await asyncio.sleep(0)
            batch = self._waiting[:MAX_BATCH]
            if not batch:  # the other drainer took them
                break
            del self._waiting[:MAX_BATCH]
            CALLBACK_BATCH_SIZE.observe(len(batch))
            try:
                results = await record_callbacks(
                    self.pool, self.runtime, [w.callback for w in batch]
                )
            except Exception as error:  # every request of the batch answers with it
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(error)
                continue
            for waiting, result in zip(batch, results, strict=True):
                if waiting.future.done():  # the request went away (client disconnected)
                    continue
                if isinstance(result, Exception):
                    waiting.future.set_exception(result)
                else:
                    waiting.future.set_result(result)
