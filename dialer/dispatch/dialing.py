"""`place_call`: turn one `dialing` attempt into exactly one provider call.

Creating a call is not idempotent at the provider (Twilio error 20500: a resent POST can
ring the person twice). The attempt is therefore marked `placing`, and committed, *before*
the create request leaves; whoever later finds it `placing` without a call sid (this task
redelivered after a worker died, or the reaper) looks the call up at the provider and adopts
it rather than send the request again.
"""

from __future__ import annotations

from enum import StrEnum

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.calls import CallEvent, apply_event, mark_placing
from dialer.campaign_state import CampaignAction, can, transition
from dialer.dispatch.attempt_end import end_unplaced, finish_call
from dialer.errors import NotFoundError
from dialer.pool.leases import send_limits
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
from dialer.providers.twiml import build_twiml, render_message
from dialer.runtime import Runtime
from models import (
    LIVE_ATTEMPT_STATUSES,
    Account,
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    DncEntry,
    EndReason,
    MachineAction,
    Outcome,
    relax_durability,
    transaction,
    utcnow,
)

log = structlog.get_logger(__name__)


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


def _call_request(
    runtime: Runtime, attempt: CallAttempt, job: CallJob, campaign: Campaign
) -> CallRequest:
    message = render_message(campaign.message, job.variables)
    amd = campaign.machine_detection
    leave_message = amd and campaign.machine_action is MachineAction.LEAVE_MESSAGE
    return CallRequest(
        to=attempt.phone_e164,
        from_=attempt.from_e164,
        twiml=build_twiml(
            message,
            gather_action_url=gather_url(runtime, attempt.id) if campaign.gather_dtmf else None,
        ),
        status_callback=status_callback_url(runtime, attempt.id),
        ring_timeout_s=campaign.ring_timeout_s,
        time_limit_s=campaign.time_limit_s,
        # Waiting for the beep (synchronous AMD) lets the message land on the voicemail.
        machine_detection=("DetectMessageEnd" if leave_message else "Enable") if amd else None,
        async_amd_callback=amd_callback_url(runtime, attempt.id)
        if amd and not leave_message
        else None,
    )


def place_call(runtime: Runtime, attempt_id: int) -> PlaceResult:
    """Create the provider call for attempt `attempt_id`, once.

    Acts only on an attempt in `dialing` (or `placing`, which is recovered by lookup). On an
    ambiguous provider error the call is looked up and adopted if it exists; a throttled or
    unfound call returns the contact to the pacer with a backoff. Permanent contact errors
    end the contact with the provider's code; account errors pause the campaign.

    Raises:
        NotFoundError: no attempt has that id.
    """
    url = runtime.settings.database_url
    with transaction(url) as session:
        # One round trip: the attempt (locked), its contact, its campaign, and the DNC
        # re-check (a number added after upload is not called).
        row = session.execute(
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
            .where(CallAttempt.id == attempt_id)
            .with_for_update(of=CallAttempt)
        ).one_or_none()
        if row is None:
            raise NotFoundError("attempt_not_found", f"no call attempt {attempt_id}")
        attempt, job, campaign, account, on_dnc = row
        if attempt.status is AttemptStatus.PLACING and attempt.call_sid is None:
            recovering = True
        elif attempt.status is AttemptStatus.DIALING:
            recovering = False
            if on_dnc:
                end_unplaced(session, runtime, attempt, outcome=Outcome.DO_NOT_CALL)
                return PlaceResult.DO_NOT_CALL
            request = _call_request(runtime, attempt, job, campaign)
            limits = send_limits(account, campaign)
            mark_placing(attempt, utcnow())
        else:
            return PlaceResult.SKIPPED

    if recovering:
        return _recover(runtime, attempt_id, error=None)
    runtime.pool.wait_for_send_slot(limits)
    try:
        call = runtime.provider.create_call(request)
    except AmbiguousProviderError as error:
        return _recover(runtime, attempt_id, error=error)
    except ThrottledProviderError as error:
        return _not_placed(runtime, attempt_id, error, outcome=None)
    except ContactProviderError as error:
        return _not_placed(runtime, attempt_id, error, outcome=Outcome.REJECTED)
    except AccountProviderError as error:
        return _trip_breaker(runtime, attempt_id, error)
    except ProviderError as error:
        return _recover(runtime, attempt_id, error=error)
    _adopt(runtime, attempt_id, call)
    return PlaceResult.PLACED


def recover_placing(runtime: Runtime, attempt_id: int) -> PlaceResult:
    """Resolve an attempt stuck in `placing` (the reaper): adopt its call or retry later."""
    return _recover(runtime, attempt_id, error=None)


def _lock(session: Session, attempt_id: int) -> CallAttempt:
    attempt = session.scalars(
        select(CallAttempt).where(CallAttempt.id == attempt_id).with_for_update()
    ).one_or_none()
    if attempt is None:
        raise NotFoundError("attempt_not_found", f"no call attempt {attempt_id}")
    return attempt


def _recover(runtime: Runtime, attempt_id: int, error: ProviderError | None) -> PlaceResult:
    """The create request may or may not have made a call: find it before anything else."""
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        if attempt.call_sid is not None or attempt.status is not AttemptStatus.PLACING:
            return PlaceResult.ADOPTED  # a status callback already tied the call to it
        to, since = attempt.phone_e164, attempt.created_at
        from_ = attempt.from_e164
    try:
        candidates = [c for c in runtime.provider.list_calls(to, since) if c.from_ == from_]
    except ProviderError as lookup_error:
        # Not knowing is not permission to dial again: leave it `placing` for the reaper.
        log.warning("call_lookup_failed", attempt_id=attempt_id, error=str(lookup_error))
        return PlaceResult.RETRY_LATER
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        if attempt.call_sid is not None or attempt.status is not AttemptStatus.PLACING:
            return PlaceResult.ADOPTED
        taken = set(
            session.scalars(
                select(CallAttempt.call_sid).where(
                    CallAttempt.call_sid.in_([c.sid for c in candidates])
                )
            )
        )
        free = [c for c in candidates if c.sid not in taken]
        if free:
            _adopt_sid(attempt, free[0].sid)
            log.info("call_adopted", attempt_id=attempt_id, call_sid=free[0].sid)
            return PlaceResult.ADOPTED
        end_unplaced(
            session,
            runtime,
            attempt,
            outcome=None,
            error_code=error.code if error else None,
            error_message=str(error) if error else "create request lost",
        )
        return PlaceResult.RETRY_LATER


def _adopt(runtime: Runtime, attempt_id: int, call: ProviderCall) -> None:
    with transaction(runtime.settings.database_url) as session:
        # Losing this write in a crash is harmless: the attempt stays `placing` and is
        # resolved by lookup (the reaper) or by the call's first status callback.
        relax_durability(session)
        _adopt_sid(_lock(session, attempt_id), call.sid)


def _adopt_sid(attempt: CallAttempt, call_sid: str) -> None:
    """Tie the call to the attempt through the state machine: the sid, and `queued` if the
    attempt was still `placing`. Its later statuses come from callbacks or the reaper."""
    apply_event(attempt, CallEvent(AttemptStatus.QUEUED, -1, utcnow(), call_sid))


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


def _trip_breaker(runtime: Runtime, attempt_id: int, error: AccountProviderError) -> PlaceResult:
    with transaction(runtime.settings.database_url) as session:
        attempt = _lock(session, attempt_id)
        campaign = session.get_one(Campaign, attempt.campaign_id, with_for_update=True)
        if can(campaign, CampaignAction.TRIP_BREAKER):
            reason = f"provider account error {error.code}: {error.message}"
            transition(campaign, CampaignAction.TRIP_BREAKER, reason=reason)
        end_unplaced(
            session,
            runtime,
            attempt,
            outcome=None,
            error_code=error.code,
            error_message=str(error),
            counts_as_dial_error=False,
        )
        log.warning("circuit_breaker_tripped", campaign_id=campaign.id, code=error.code)
    return PlaceResult.BREAKER_TRIPPED


def hang_up_call(runtime: Runtime, attempt_id: int, reason: EndReason) -> None:
    """End a live call at the provider (the hold-time watchdog, a lease about to lapse, a
    machine on a campaign that hangs up on machines) and apply what the provider reports.

    `reason` is committed as the attempt's
    `end_reason` first: the provider's final callback may arrive before the hang-up request
    returns, and the outcome (`hold_cap`) is read from it. A call already over, or an
    attempt with no call yet, is left alone.
    """
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id, with_for_update=True)
        if attempt.status not in LIVE_ATTEMPT_STATUSES or attempt.call_sid is None:
            return
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
