"""`place_call`: turn one `dialing` attempt into exactly one provider call.

Creating a call is not idempotent at the provider (Twilio error 20500: a resent POST can
ring the person twice). The attempt is therefore marked `placing`, and committed, *before*
the create request leaves, with a send deadline after which the request may no longer
leave. Whoever later finds it `placing` without a call sid (this task redelivered after a
worker died, or the reaper) waits until that deadline and the provider timeout have passed,
then looks the call up at the provider and adopts it rather than send the request again.
A request the provider processes even later still shows itself, by the status callback of
the call it made: `resolve_late_call` adopts that call or hangs it up, never both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import redis
import structlog
from sqlalchemy import Update, bindparam, exists, func, literal_column, select, update
from sqlalchemy.orm import Session

from dialer.calls import (
    PLACING_WITHOUT_CALL,
    CallEvent,
    apply_event,
    call_answered,
    claimed,
    mark_placing,
    move_job,
    revive,
)
from dialer.campaign_state import BREAKER, CampaignAction, transition
from dialer.dispatch.attempt_end import end_unplaced, finish_call
from dialer.dispatch.timing import callable_until, dial_refusal
from dialer.errors import NotFoundError
from dialer.menu import RECORDING_DISCLOSURE, Menu, menu_twiml
from dialer.metrics import BREAKER_TRIPS
from dialer.numbers import NumberRejected, check_policy, classify
from dialer.pool import SendSlot, SendWindow
from dialer.pool.leases import ProviderLimits, lease_seconds, release_keys, send_windows
from dialer.providers.base import (
    AccountProviderError,
    AmbiguousProviderError,
    CallRequest,
    ContactProviderError,
    NotFoundProviderError,
    ProviderCall,
    ProviderError,
    ThrottledProviderError,
)
from dialer.providers.twiml import render_message
from dialer.runtime import Runtime
from dialer.settings import Settings
from models import (
    CANCEL_END_REASONS,
    LIVE_ATTEMPT_STATUSES,
    Account,
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignStatus,
    DncEntry,
    EndReason,
    JobStatus,
    MachineAction,
    Outcome,
    engine_for,
    on_commit,
    relax_durability,
    transaction,
    utcnow,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DialOrder:
    """A committed `dialing` attempt to hand to `place_call`, with the ids that name its
    call (campaign and account: log context, Flower), known to whoever committed it."""

    attempt_id: int
    campaign_id: int
    account_id: int


class PlaceResult(StrEnum):
    """What one run of `place_call` did."""

    PLACED = "placed"
    ADOPTED = "adopted"
    """An earlier, ambiguous create had made the call; it was found and adopted."""
    RETRY_LATER = "retry_later"
    REJECTED = "rejected"
    DO_NOT_CALL = "do_not_call"
    BREAKER_TRIPPED = "breaker_tripped"
    SKIPPED = "skipped"
    """The attempt was no longer `dialing` or `placing`: nothing to do."""
    STOPPED = "stopped"
    """Its campaign was paused or cancelled before the request left; or cancelled with
    hang-up while it was on its way, and its call was hung up as soon as it had a sid."""
    FAILED = "failed"
    """Something other than the provider failed; counted towards `MAX_TASK_FAILURES`."""
    LATE = "late"
    """The call was made after the attempt had been given up (`resolve_late_call`)."""
    NOT_CALLABLE = "not_callable"
    """The contact's calling window closed (or its `call_before`, its campaign's `end_at`
    passed) since the pacer claimed it: not dialled, back to pending uncharged, due at its
    next opening."""


CONNECTION_OVERRIDES = "#rc=3&rp=all"
"""Twilio webhook connection overrides on our callback URLs: retry a failed delivery up to
3 times, on any failure (a 503 while PostgreSQL is briefly down must be delivered again).
Twilio "Webhooks: Connection Overrides"; the fragment is part of the URL Twilio signs."""


def status_callback_url(runtime: Runtime, attempt_id: int) -> str:
    """Our status webhook for one attempt; the attempt id in the path ties callbacks to it."""
    base = runtime.settings.public_base_url
    return f"{base}/v1/providers/twilio/status/{attempt_id}{CONNECTION_OVERRIDES}"


def amd_callback_url(runtime: Runtime, attempt_id: int) -> str:
    base = runtime.settings.public_base_url
    return f"{base}/v1/providers/twilio/amd/{attempt_id}{CONNECTION_OVERRIDES}"


def gather_url(runtime: Runtime, attempt_id: int) -> str:
    return f"{runtime.settings.public_base_url}/v1/providers/twilio/gather/{attempt_id}"


def recording_callback_url(runtime: Runtime, attempt_id: int) -> str:
    base = runtime.settings.public_base_url
    return f"{base}/v1/providers/twilio/recording/{attempt_id}{CONNECTION_OVERRIDES}"


def _call_request(
    runtime: Runtime, attempt: CallAttempt, job: CallJob, campaign: Campaign
) -> CallRequest:
    # A single call's own settings (`POST /v1/calls`) override its campaign's.
    message = render_message(
        campaign.message if job.message is None else job.message, job.variables
    )
    amd = campaign.machine_detection if job.machine_detection is None else job.machine_detection
    action = campaign.machine_action if job.machine_action is None else job.machine_action
    # A voicemail message waits for the greeting's end (`DetectMessageEnd`) asynchronously:
    # a person hears the message at once, a machine gets the voicemail once it has spoken
    # (`dialer.dispatch.voicemail`).
    voicemail = campaign.voicemail_message is not None
    leave_message = amd and action is MachineAction.LEAVE_MESSAGE and not voicemail
    detection = "DetectMessageEnd" if leave_message or voicemail else "Enable"
    record = campaign.record if job.record is None else job.record
    # A call recorded on its own (its campaign records nothing) says the default disclosure.
    disclosure = campaign.recording_disclosure if campaign.record else RECORDING_DISCLOSURE
    return CallRequest(
        to=attempt.phone_e164,
        from_=attempt.from_e164,
        twiml=menu_twiml(
            message,
            Menu.read(campaign.menu if job.menu is None else job.menu),
            gather_url(runtime, attempt.id),
            disclosure=disclosure if record else None,
        ),
        status_callback=status_callback_url(runtime, attempt.id),
        ring_timeout_s=job.ring_timeout_s or campaign.ring_timeout_s,
        time_limit_s=job.time_limit_s or campaign.time_limit_s,
        # Waiting for the beep (synchronous AMD) lets the message land on the voicemail.
        machine_detection=detection if amd or voicemail else None,
        async_amd_callback=amd_callback_url(runtime, attempt.id)
        if (amd or voicemail) and not leave_message
        else None,
        recording_callback=recording_callback_url(runtime, attempt.id) if record else None,
    )


MAX_TASK_FAILURES = 3
"""Tries of `place_call` that fail on something other than the provider (an exception
before the request leaves) before the contact ends with outcome `error`."""

RECOVERY_MARGIN_S = 5.0
"""Seconds past an attempt's send deadline plus the provider timeout before anyone but the
sending worker looks its call up: by then its create request has left and been answered,
or never will be."""


def recoverable_at(settings: Settings, attempt: CallAttempt) -> datetime:
    """When a `placing` attempt without a call may be resolved by lookup (the reaper, a
    redelivered task): its send deadline + the provider timeout + `RECOVERY_MARGIN_S`."""
    sent_by = attempt.send_deadline or (
        attempt.created_at + timedelta(seconds=settings.stuck_dialing_after_s)
    )
    return sent_by + timedelta(seconds=settings.twilio_timeout_s + RECOVERY_MARGIN_S)


def place_call(runtime: Runtime, attempt_id: int) -> PlaceResult:
    """Create the provider call for attempt `attempt_id`, once.

    Acts only on an attempt in `dialing` of a running campaign (or `placing`, which is
    recovered by lookup once its send deadline has long passed). The attempt is committed
    `placing` with a send deadline (`settings.send_wait_s` ahead) before the request
    leaves; the request leaves only with a send-time CPS slot and before that deadline
    (monotonic and wall clock), else the contact goes back to the pacer uncharged. On an
    ambiguous provider error the call is looked up and adopted if it exists, else the
    contact waits `ambiguous_redial_after_s` before it is dialled again; a throttled
    create returns the contact to the pacer with a backoff. Permanent contact errors end
    the contact with the provider's code; account errors pause every running campaign of
    the account (the circuit breaker). An attempt of a paused campaign goes back to
    pending uncharged, of a cancelled one ends with it. Any other exception before the
    request leaves is recorded; the `MAX_TASK_FAILURES`th ends the contact with `error`.
    The campaign's number policy is applied again (`number_refusal`): a premium-rate
    number or one of a country not allowed ends its contact `rejected`, the reason as the
    attempt's `error_message`, and is never dialled. The calling window is checked again
    here (`runtime.clock()`): a contact no longer callable is not dialled (`not_callable`),
    and the send deadline is never later than the moment its window closes, so a request
    waiting for its CPS slot at 19:59:59 does not leave at 20:00:01.

    Raises:
        NotFoundError: no attempt has that id.
    """
    try:
        prepared = _prepare(runtime, attempt_id)
    except NotFoundError:
        raise
    except Exception as error:  # a poison attempt must end, whatever the cause
        return record_task_failure(runtime, attempt_id, error)
    if isinstance(prepared, PlaceResult):
        return prepared
    request, windows, deadline = prepared
    # Until its request is answered, the slot counts for as long as the request may still
    # leave and be answered (`recoverable_at`), plus the window.
    hold_s = (
        deadline.monotonic
        - time.monotonic()
        + runtime.settings.twilio_timeout_s
        + RECOVERY_MARGIN_S
        + max(w.seconds for w in windows)
    )
    slot = runtime.pool.wait_for_send_slot(
        str(attempt_id), windows, deadline.monotonic, hold_s=hold_s
    )
    # The last check before the request leaves: a worker paused past its deadline (GC, a
    # VM pause, SIGSTOP) gives the attempt back instead of sending late.
    if slot is None or deadline.passed():
        return _give_back(runtime, attempt_id, "send deadline (or window close) passed")
    try:
        call = runtime.provider.create_call(request)
    except AmbiguousProviderError as error:
        # No answer: the provider may process the request late, so its slot keeps counting.
        return _recover(runtime, attempt_id, error=error)
    except ThrottledProviderError as error:
        _answered(runtime, slot)
        return _not_placed(runtime, attempt_id, error, outcome=None)
    except ContactProviderError as error:
        _answered(runtime, slot)
        return _not_placed(runtime, attempt_id, error, outcome=Outcome.REJECTED)
    except AccountProviderError as error:
        _answered(runtime, slot)
        return _trip_breaker(runtime, attempt_id, error)
    except ProviderError as error:
        return _recover(runtime, attempt_id, error=error)
    _answered(runtime, slot)
    return _adopt(runtime, attempt_id, call.sid)


def _answered(runtime: Runtime, slot: SendSlot) -> None:
    """The provider answered the request: its send slot counts one window more, not the
    whole hold. If Redis cannot be told, the slot keeps its hold (only slower, never
    over the limit)."""
    try:
        runtime.pool.sent(slot)
    except redis.RedisError as error:
        log.warning("send_slot_not_shortened", member=slot.member, error=str(error))


@dataclass(frozen=True, slots=True)
class SendDeadline:
    """The moment after which a create request may no longer leave, on both clocks: the
    monotonic one (immune to wall-clock steps) and the wall clock stored on the attempt
    (which also counts time the whole machine was paused)."""

    monotonic: float
    wall: datetime

    def passed(self) -> bool:
        return time.monotonic() > self.monotonic or utcnow() > self.wall


_LOCK_FOR_DIAL = (
    select(
        CallAttempt,
        CallJob,
        Campaign,
        Account,
        DncEntry.listed(CallAttempt.account_id, CallAttempt.phone_e164),
    )
    .join(CallJob, CallJob.id == CallAttempt.job_id)
    .join(Campaign, Campaign.id == CallAttempt.campaign_id)
    .join(Account, Account.id == CallAttempt.account_id)
    .where(CallAttempt.id == bindparam("attempt_id"))
    .with_for_update(of=CallAttempt)
)
"""One round trip: the attempt (locked), its contact, its campaign and account, and the DNC
re-check (a number added after upload is not called). Built once: the statement's cache
key is then computed once per process, not once per call."""

_MARK_PLACING = (
    update(CallAttempt)
    .where(CallAttempt.id == bindparam("attempt_id"))
    .values(
        status=bindparam("new_status"),
        placed_at=bindparam("new_placed_at"),
        send_deadline=bindparam("new_send_deadline"),
    )
    .execution_options(synchronize_session=False)
)
"""What `mark_placing` and the send deadline changed, written as one UPDATE (`updated_at`
by its column default)."""


def _prepare(
    runtime: Runtime, attempt_id: int
) -> PlaceResult | tuple[CallRequest, list[SendWindow], SendDeadline]:
    """Lock the attempt and decide: nothing to do, a refusal, recovery, or a request to
    send (committed `placing` with its send deadline) with its send windows and
    deadline."""
    settings = runtime.settings
    with transaction(settings.database_url) as session:
        row = session.execute(_LOCK_FOR_DIAL, {"attempt_id": attempt_id}).one_or_none()
        if row is None:
            raise NotFoundError("attempt_not_found", f"no call attempt {attempt_id}")
        attempt, job, campaign, account, on_dnc = row
        if attempt.status is AttemptStatus.PLACING and attempt.call_sid is None:
            if utcnow() < recoverable_at(settings, attempt):
                return PlaceResult.RETRY_LATER  # its request may still be in flight
            recovering = True
        elif attempt.status is not AttemptStatus.DIALING:
            return PlaceResult.SKIPPED
        elif campaign.status is not CampaignStatus.RUNNING:
            return stop_dial(session, runtime, attempt)
        elif on_dnc:
            end_unplaced(session, runtime, attempt, outcome=Outcome.DO_NOT_CALL)
            return PlaceResult.DO_NOT_CALL
        elif (reason := number_refusal(campaign, attempt.phone_e164)) is not None:
            end_unplaced(session, runtime, attempt, outcome=Outcome.REJECTED, error_message=reason)
            return PlaceResult.REJECTED
        elif (refusal := dial_refusal(campaign, job, runtime.clock())) is not None:
            end_unplaced(
                session,
                runtime,
                attempt,
                outcome=None,
                error_message=f"not dialled: {refusal}",
                counts_as_dial_error=False,
            )
            return PlaceResult.NOT_CALLABLE
        else:
            recovering = False
            now = utcnow()
            clock_now = runtime.clock()
            open_s = (callable_until(campaign, job, clock_now) - clock_now).total_seconds()
            send_s = min(settings.send_wait_s, open_s)
            request = _call_request(runtime, attempt, job, campaign)
            windows = send_windows(account, campaign, ProviderLimits.of(settings))
            deadline = SendDeadline(
                time.monotonic() + send_s,
                now + timedelta(seconds=send_s),
            )
            # The state machine moves a detached copy; one UPDATE writes what it changed,
            # without the unit of work's flush.
            session.expunge(attempt)
            mark_placing(attempt, now)
            attempt.send_deadline = deadline.wall
            session.execute(
                _MARK_PLACING,
                {
                    "attempt_id": attempt.id,
                    "new_status": attempt.status,
                    "new_placed_at": attempt.placed_at,
                    "new_send_deadline": attempt.send_deadline,
                },
            )
    if recovering:
        return _recover(runtime, attempt_id, error=None)
    return request, windows, deadline


def number_refusal(campaign: Campaign, e164: str) -> str | None:
    """Why `e164` may not be dialled under its campaign's number policy (a
    `dialer.numbers.RejectReason`: `premium_rate`, `country_not_allowed`, or not a valid
    number), or None. Checked right before dialling whatever way the contact came in (a
    CSV, a pushed contact, a single call, a row written by other code), not only at ingest."""
    try:
        check_policy(
            classify(e164, "ZZ"),
            allow_premium=campaign.allow_premium,
            allowed_countries=campaign.allowed_countries,
        )
    except NumberRejected as rejected:
        return rejected.reason.value
    return None


def stop_dial(session: Session, runtime: Runtime, attempt: CallAttempt) -> PlaceResult:
    """An attempt not yet sent whose campaign is no longer running: its contact goes back
    to pending uncharged (paused) or ends with the campaign (cancelled)."""
    end_unplaced(
        session,
        runtime,
        attempt,
        outcome=None,
        error_message="campaign not running",
        counts_as_dial_error=False,
    )
    return PlaceResult.STOPPED


def recover_placing(runtime: Runtime, attempt_id: int) -> PlaceResult:
    """Resolve an attempt stuck in `placing` (the reaper, once `recoverable_at` has
    passed): adopt its call, or give the contact back after the ambiguous-create wait."""
    return _recover(runtime, attempt_id, error=None)


def record_task_failure(runtime: Runtime, attempt_id: int, error: Exception) -> PlaceResult:
    """`place_call` failed before its request could leave, on something that is not the
    provider (a template error, a bug): count the try (`_count_failure`)."""
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        if attempt.status is not AttemptStatus.DIALING:
            return PlaceResult.SKIPPED
        _count_failure(session, runtime, attempt, f"{type(error).__name__}: {error}")
    return PlaceResult.FAILED


def hand_back_lost(runtime: Runtime, attempt_id: int) -> bool:
    """A `dialing` attempt whose `place_call` has not run for `stuck_dialing_after_s` (its
    message lost with a worker, or a failed try waiting): True if it should be dispatched
    again, once per that period (its `updated_at` is touched). A lost message is not the
    attempt's fault and counts no failure; an attempt of a campaign no longer running is
    stopped instead (`stop_dial`)."""
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        if attempt.status is not AttemptStatus.DIALING:
            return False
        if session.get_one(Campaign, attempt.campaign_id).status is not CampaignStatus.RUNNING:
            stop_dial(session, runtime, attempt)
            return False
        attempt.updated_at = utcnow()
        return True


def _count_failure(session: Session, runtime: Runtime, attempt: CallAttempt, reason: str) -> None:
    """One more failed try of a `dialing` attempt, its reason recorded; at
    `MAX_TASK_FAILURES` the contact ends with outcome `error` (logged at error level), else
    the reaper hands it back after `stuck_dialing_after_s`."""
    reason = reason[:500]
    attempt.task_failures += 1
    attempt.error_message = reason
    if attempt.task_failures < MAX_TASK_FAILURES:
        log.warning("place_call_failed", attempt_id=attempt.id, error=reason)
        return
    end_unplaced(session, runtime, attempt, outcome=Outcome.ERROR, error_message=reason)
    log.error("attempt_failed_for_good", attempt_id=attempt.id, error=reason)


def _lock(session: Session, attempt_id: int) -> CallAttempt:
    attempt = session.scalars(
        select(CallAttempt).where(CallAttempt.id == attempt_id).with_for_update()
    ).one_or_none()
    if attempt is None:
        raise NotFoundError("attempt_not_found", f"no call attempt {attempt_id}")
    return attempt


def _recover(runtime: Runtime, attempt_id: int, error: ProviderError | None) -> PlaceResult:
    """The create request may or may not have made a call: find it before anything else.
    Not found, the contact is not dialled again for `ambiguous_redial_after_s`: a request
    the provider processes late then finds it waiting, and is adopted. A call adopted for
    a campaign cancelled with hang-up meanwhile is hung up at once (`_adopted`)."""
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        # A status callback may already have tied the call to it.
        tied = attempt.call_sid is not None or attempt.status is not AttemptStatus.PLACING
        canceled = _canceled_with_hang_up(attempt)
        to, since = attempt.phone_e164, attempt.created_at
        from_ = attempt.from_e164
    if tied:  # after the commit: `hang_up_call` locks the attempt's row again
        return _adopted(runtime, attempt_id, canceled)
    try:
        candidates = [c for c in runtime.provider.list_calls(to, since) if c.from_ == from_]
    except ProviderError as lookup_error:
        # Not knowing is not permission to dial again: leave it `placing` for the reaper.
        log.warning("call_lookup_failed", attempt_id=attempt_id, error=str(lookup_error))
        return PlaceResult.RETRY_LATER
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        if attempt.call_sid is None and attempt.status is AttemptStatus.PLACING:
            taken = set(
                session.scalars(
                    select(CallAttempt.call_sid).where(
                        CallAttempt.call_sid.in_([c.sid for c in candidates])
                    )
                )
            )
            free = [c for c in candidates if c.sid not in taken]
            if not free:
                end_unplaced(
                    session,
                    runtime,
                    attempt,
                    outcome=None,
                    error_code=error.code if error else None,
                    error_message=str(error) if error else "create request lost",
                    retry_after_s=runtime.settings.ambiguous_redial_wait_s,
                )
                return PlaceResult.RETRY_LATER
            _adopt_sid(attempt, free[0].sid)
            log.info("call_adopted", attempt_id=attempt_id, call_sid=free[0].sid)
        canceled = _canceled_with_hang_up(attempt)
    return _adopted(runtime, attempt_id, canceled)


def _adopted(runtime: Runtime, attempt_id: int, canceled: bool) -> PlaceResult:
    """A call is tied to the attempt: `adopted`, or hung up at once (`stopped`) when its
    campaign was cancelled with hang-up, or the call itself cancelled, before the call had
    its sid (the cancel's reason stays the attempt's: `hang_up_call`)."""
    if not canceled:
        return PlaceResult.ADOPTED
    hang_up_call(runtime, attempt_id, EndReason.CAMPAIGN_CANCELED)
    return PlaceResult.STOPPED


_TIE_PLACED = (
    update(CallAttempt)
    .where(
        CallAttempt.id == bindparam("attempt_id"),
        CallAttempt.status == PLACING_WITHOUT_CALL["status"],
        CallAttempt.call_sid.is_(None),
        # Losing this write in a crash is harmless (see `_adopt`): the commit need not wait
        # for its WAL flush. `set_config(..., true)` is `SET LOCAL` for the statement's own
        # transaction; it is evaluated once and always true.
        func.set_config("synchronous_commit", "off", True) == literal_column("'off'"),
    )
    .returning(CallAttempt.end_reason)
)
"""The common case of `_adopt` in one statement and one round trip (autocommit): an attempt
still `placing` with no call gets its call as `dialer.calls.call_answered` decides; no row
means someone else moved the attempt first, and the locking path decides."""


_TIED_BY_CALLBACK = select(CallAttempt.end_reason).where(
    CallAttempt.id == bindparam("attempt_id"),
    CallAttempt.call_sid == bindparam("sid"),
    CallAttempt.status.not_in([AttemptStatus.PLACING, AttemptStatus.NOT_PLACED]),
)
"""The attempt already has this call and has moved past `placing` (its status callback came
first): `_adopt`'s locking path would change nothing and only read `end_reason`, which is
read here without a lock (a hang-up locks the attempt again itself)."""


@lru_cache(maxsize=4)
def _tie_placed(columns: tuple[str, ...]) -> Update:
    """`_TIE_PLACED` setting `columns` from the parameters `new_<column>`."""
    return _TIE_PLACED.values({c: bindparam(f"new_{c}") for c in columns})


def _adopt(runtime: Runtime, attempt_id: int, call_sid: str) -> PlaceResult:
    """The create request answered with `call_sid`: tie it to the attempt, unless the
    attempt was given up meanwhile (`resolve_late_call`); hang it up at once if the
    campaign was cancelled with hang-up while the request was on its way."""
    columns = call_answered(call_sid, utcnow())
    engine = engine_for(runtime.settings.database_url)
    params = {"attempt_id": attempt_id, **{f"new_{c}": v for c, v in columns.items()}}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        tied = conn.execute(_tie_placed(tuple(columns)), params).one_or_none()
        if tied is None:
            # Often the call's first status callback tied it first: no write left to do.
            by_callback = {"attempt_id": attempt_id, "sid": call_sid}
            tied = conn.execute(_TIED_BY_CALLBACK, by_callback).one_or_none()
    if tied is not None:  # tied: hang it up if its campaign was cancelled with hang-up
        canceled = tied.end_reason in CANCEL_END_REASONS
        return _adopted(runtime, attempt_id, canceled) if canceled else PlaceResult.PLACED
    with transaction(runtime.settings.database_url) as session:
        # Losing this write in a crash is harmless: the attempt stays `placing` and is
        # resolved by lookup (the reaper) or by the call's first status callback.
        relax_durability(session)
        attempt = _lock(session, attempt_id)
        if attempt.status is AttemptStatus.PLACING:
            _adopt_sid(attempt, call_sid)
        late = attempt.status is AttemptStatus.NOT_PLACED and attempt.call_sid is None
        canceled = _canceled_with_hang_up(attempt)
    if late:  # the reaper gave it up while this request was on its way
        resolve_late_call(runtime, attempt_id, call_sid)
        return PlaceResult.LATE
    return _adopted(runtime, attempt_id, canceled) if canceled else PlaceResult.PLACED


def _canceled_with_hang_up(attempt: CallAttempt) -> bool:
    """Whether the attempt's campaign was cancelled with hang-up, or the call itself
    cancelled, before its call had a sid (`campaigns.lifecycle.hang_up_on_cancel`,
    `campaigns.calls.cancel_call` marked it): its call, once tied to it (here or by its
    first status callback), is hung up at once instead of left ringing."""
    return attempt.end_reason in CANCEL_END_REASONS and attempt.call_sid is not None


def _adopt_sid(attempt: CallAttempt, call_sid: str) -> None:
    """Tie the call to the attempt through the state machine: the sid, and `queued` if the
    attempt was still `placing`. Its later statuses come from callbacks or the reaper."""
    apply_event(attempt, CallEvent(AttemptStatus.QUEUED, -1, utcnow(), call_sid))


class LateCall(StrEnum):
    """What `resolve_late_call` did with a call that turned up for a given-up attempt."""

    ADOPTED = "adopted"
    HUNG_UP = "hung_up"
    NOTHING = "nothing"
    """Already resolved (the attempt has a call), or it was still `placing` and adopted
    the ordinary way."""


def resolve_late_call(runtime: Runtime, attempt_id: int, call_sid: str) -> LateCall:
    """A call exists for an attempt that was already given up (`not-placed`): its create
    request was processed after we stopped waiting for it. Adopt it if the contact is
    still waiting with no newer attempt (the attempt lives again, the contact is in
    progress and the call holds a lease again, so the pool counts it), else hang it up at
    once (cancelled if not yet answered) and record `late_create`. Never both, never
    neither; idempotent per attempt.
    """
    canceled: bool | None = None  # set when the create's own attempt takes the call
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        if attempt.status is AttemptStatus.PLACING and attempt.call_sid is None:
            _adopt_sid(attempt, call_sid)
            canceled = _canceled_with_hang_up(attempt)
        elif attempt.status is not AttemptStatus.NOT_PLACED or attempt.call_sid is not None:
            return LateCall.NOTHING
        else:
            job = session.get_one(CallJob, attempt.job_id, with_for_update=True)
            campaign = session.get_one(Campaign, attempt.campaign_id)
            newer = session.scalar(
                select(
                    exists().where(
                        CallAttempt.job_id == job.id,
                        CallAttempt.id > attempt.id,
                        CallAttempt.status != AttemptStatus.NOT_PLACED,
                    )
                )
            )
            adopt = job.status is JobStatus.PENDING and not newer
            if adopt:
                revive(attempt, call_sid)
                lease_s = lease_seconds(campaign, job)
                attempt.lease_expires_at = utcnow() + timedelta(seconds=lease_s)
                move_job(job, claimed(job))
                scope_keys = release_keys(attempt.account_id, campaign.id, attempt.from_e164)
                member = str(attempt.id)
                on_commit(session, lambda: runtime.pool.hold(member, lease_s, scope_keys))
            else:
                attempt.call_sid = call_sid
                attempt.end_reason = EndReason.LATE_CREATE
    if canceled is not None:  # after the commit: `hang_up_call` locks the row again
        _adopted(runtime, attempt_id, canceled)
        return LateCall.NOTHING
    if adopt:
        log.warning("late_call_adopted", attempt_id=attempt_id, call_sid=call_sid)
        try:
            apply_provider_view(runtime, attempt_id, runtime.provider.fetch_call(call_sid))
        except ProviderError as error:  # the reaper polls it later
            log.warning("late_call_fetch_failed", attempt_id=attempt_id, error=str(error))
        return LateCall.ADOPTED
    for delay_s in (0.5, 2.0, None):
        try:
            runtime.provider.hang_up(call_sid)
            break
        except NotFoundProviderError:
            break  # the call is already over
        except ProviderError as error:
            log.error("late_call_hang_up_failed", attempt_id=attempt_id, error=str(error))
            if delay_s is None:
                break
            time.sleep(delay_s)
    log.warning("late_call_hung_up", attempt_id=attempt_id, call_sid=call_sid)
    return LateCall.HUNG_UP


def _not_placed(
    runtime: Runtime, attempt_id: int, error: ProviderError, outcome: Outcome | None
) -> PlaceResult:
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        end_unplaced(
            session,
            runtime,
            attempt,
            outcome=outcome,
            error_code=error.code,
            error_message=str(error),
        )
    return PlaceResult.REJECTED if outcome else PlaceResult.RETRY_LATER


def _give_back(runtime: Runtime, attempt_id: int, why: str) -> PlaceResult:
    """Nothing was sent for this `placing` attempt: the contact goes back to the pacer
    uncharged (if nobody resolved the attempt meanwhile)."""
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        if attempt.status is not AttemptStatus.PLACING or attempt.call_sid is not None:
            return PlaceResult.SKIPPED
        end_unplaced(
            session, runtime, attempt, outcome=None, error_message=why, counts_as_dial_error=False
        )
    log.info("dial_given_back", attempt_id=attempt_id, why=why)
    return PlaceResult.RETRY_LATER


def _trip_breaker(runtime: Runtime, attempt_id: int, error: AccountProviderError) -> PlaceResult:
    """An account-level refusal: every running campaign of the account pauses with the
    provider's code and message (the circuit breaker); the contact is not charged."""
    reason = f"provider account error {error.code}: {error.message}"
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        running = session.scalars(
            select(Campaign)
            .where(
                Campaign.account_id == attempt.account_id,
                Campaign.status == CampaignStatus.RUNNING,
            )
            .order_by(Campaign.id)
            .with_for_update()
        ).all()
        for campaign in running:
            transition(campaign, CampaignAction.TRIP_BREAKER, actor=BREAKER, reason=reason)
            campaign.breaker_trips += 1
        if attempt.status is AttemptStatus.PLACING:
            end_unplaced(
                session,
                runtime,
                attempt,
                outcome=None,
                error_code=error.code,
                error_message=str(error),
                counts_as_dial_error=False,
            )
    log.warning(
        "circuit_breaker_tripped",
        account_id=attempt.account_id,
        campaigns=[c.id for c in running],
        code=error.code,
    )
    BREAKER_TRIPS.labels(str(error.code or "none")).inc(len(running))
    return PlaceResult.BREAKER_TRIPPED


def hang_up_call(runtime: Runtime, attempt_id: int, reason: EndReason) -> None:
    """End a live call at the provider (the hold-time watchdog, a lease about to lapse, a
    machine on a campaign that hangs up on machines) and apply what the provider reports.

    `reason` is committed as the attempt's
    `end_reason` first (unless a cancel's reason is there already, which decides what its
    contact becomes): the provider's final callback may arrive before the hang-up request
    returns, and the outcome (`hold_cap`) is read from it. A call already over, or an
    attempt with no call yet, is left alone.
    """
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id, with_for_update=True)
        if attempt.status not in LIVE_ATTEMPT_STATUSES or attempt.call_sid is None:
            return
        if attempt.end_reason not in CANCEL_END_REASONS:  # a cancel's reason is kept
            attempt.end_reason = reason
        call_sid = attempt.call_sid
    try:
        call: ProviderCall | None = runtime.provider.hang_up(call_sid)
    except NotFoundProviderError:
        call = None
    except ProviderError as error:
        log.warning("hang_up_failed", attempt_id=attempt_id, error=str(error))
        return
    ended = apply_provider_view(runtime, attempt_id, call)
    log.info("call_hung_up", attempt_id=attempt_id, reason=reason, ended=ended)


def apply_provider_view(runtime: Runtime, attempt_id: int, call: ProviderCall | None) -> bool:
    """Apply what the provider reports of a live attempt's call (a fetch, a hang-up reply;
    None: the provider does not know the call, so it failed) through the state machine, and
    touch the attempt so a quiet call is polled once per `status_poll_after_s`.

    Returns:
        True if the attempt ended now (the contact's next step is then decided).
    """
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id, with_for_update=True)
        if attempt.status not in LIVE_ATTEMPT_STATUSES:
            return False
        attempt.updated_at = utcnow()
        return _apply(session, runtime, attempt, call)


def _apply(
    session: Session, runtime: Runtime, attempt: CallAttempt, call: ProviderCall | None
) -> bool:
    """The provider's view of `attempt`'s call through `apply_event`; finish it if it ended."""
    event = (
        as_event(call)
        if call is not None
        else CallEvent(AttemptStatus.FAILED, -1, utcnow(), attempt.call_sid or "")
    )
    ended = apply_event(attempt, event)
    if ended:
        finish_call(session, runtime, attempt)
    return ended


def as_event(call: ProviderCall) -> CallEvent:
    """A provider's view of a call (fetch, hang-up reply) as a state machine event."""
    return CallEvent(
        status=AttemptStatus(call.status),
        sequence=-1,
        timestamp=call.end_time or utcnow(),
        call_sid=call.sid,
        answered_by=call.answered_by,
        duration_s=call.duration_s,
    )
