"""Voicemail drop: the voicemail message left on an answering machine once its greeting ends.

A call of a campaign with a `voicemail_message` asks for asynchronous AMD with
`MachineDetection=DetectMessageEnd` (`dialer.dispatch.dialing`): the message plays at
once for a person, while AMD listens. When AMD reports the end of a machine's greeting
(`AnsweredBy` `machine_end_beep`, `machine_end_silence` or `machine_end_other`), the AMD
webhook (`dialer.dispatch.callbacks`, `drop_voicemail`) has this module replace the live
call's TwiML with the voicemail message (Twilio `POST Calls/{Sid}.json` `Twiml=`, as
Twilio's "Answering Machine Detection" guide does with asynchronous AMD): it starts after
the beep, and the call ends when it is said. Whether a machine answer is tried again is
the retry matrix's (`machine`), whatever was left.
"""

from __future__ import annotations

from enum import StrEnum

import structlog

from dialer.providers.base import ProviderError
from dialer.providers.twiml import render_message, say_twiml
from dialer.runtime import Runtime
from models import LIVE_ATTEMPT_STATUSES, CallAttempt, CallJob, Campaign, transaction, utcnow

log = structlog.get_logger(__name__)


class DropResult(StrEnum):
    """What one `drop_voicemail` did."""

    DROPPED = "dropped"
    SKIPPED = "skipped"
    """The call is over, has no call sid, was dropped already, or its campaign has no
    voicemail message (any more)."""
    FAILED = "failed"
    """The provider refused the update (the call ended meanwhile: Twilio 21220)."""


def drop_voicemail(runtime: Runtime, attempt_id: int) -> DropResult:
    """Leave the campaign's voicemail message on attempt `attempt_id`'s live call, once.

    The message is rendered from the contact's variables, the provider asked to run it
    (`TelephonyProvider.update_twiml`), and `voicemail_dropped_at` committed once the
    provider took it: the report's `voicemail_drops`. Read without a lock held across the
    provider request; a second run (a duplicate AMD callback) finds it dropped.

    Raises:
        sqlalchemy.exc.NoResultFound: no attempt has that id.
    """
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        job = session.get_one(CallJob, attempt.job_id)
        campaign = session.get_one(Campaign, attempt.campaign_id)
        live = attempt.status in LIVE_ATTEMPT_STATUSES and attempt.call_sid is not None
        if not live or attempt.voicemail_dropped_at or campaign.voicemail_message is None:
            return DropResult.SKIPPED
        call_sid = attempt.call_sid
        twiml = say_twiml(render_message(campaign.voicemail_message, job.variables))
    assert call_sid is not None
    try:
        runtime.provider.update_twiml(call_sid, twiml)
    except ProviderError as error:
        log.warning("voicemail_not_dropped", attempt_id=attempt_id, error=str(error))
        return DropResult.FAILED
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id, with_for_update=True)
        attempt.voicemail_dropped_at = utcnow()
    log.info("voicemail_dropped", attempt_id=attempt_id)
    return DropResult.DROPPED
