"""`DEV_TIME_SCALE`: in development the dialer's waits follow the simulator's time scale;
with Twilio the setting is refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from dialer.dispatch.attempt_end import finish_call
from dialer.runtime import Runtime
from dialer.settings import Settings
from models import AttemptStatus, CallAttempt, CallJob, CampaignStatus, JobStatus, transaction
from tests.dialer.test_pacer_windows import Clock, utc
from tests.factories import make_account, make_attempt, make_campaign, make_job


@pytest.fixture
def runtime_settings() -> dict[str, Any]:
    return {"dev_time_scale": 0.001}


def test_a_no_answer_retry_is_due_after_the_scaled_delay(runtime: Runtime) -> None:
    """The default matrix's 3600 s no-answer delay, times 0.001: due 3.6 s later, for a
    campaign created with nothing but the defaults."""
    clock = Clock(utc(2027, 1, 15, 17))  # noon in New York, inside the window
    runtime.clock = clock
    with transaction(runtime.settings.database_url) as session:
        campaign = make_campaign(session, make_account(session), status=CampaignStatus.RUNNING)
        contact = make_job(
            session,
            campaign,
            "+12125550143",
            zones=["America/New_York"],
            status=JobStatus.IN_PROGRESS,
            attempt_count=1,
        )
        attempt_id = make_attempt(session, contact, status=AttemptStatus.RINGING).id
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        attempt.status = AttemptStatus.NO_ANSWER
        finish_call(session, runtime, attempt)
    with transaction(runtime.settings.database_url) as session:
        retried = session.get_one(CallJob, contact.id)
        assert retried.status is JobStatus.PENDING
        assert retried.next_due_at == clock.now + timedelta(seconds=3.6)


def test_the_scaled_waits_keep_their_floors() -> None:
    settings = Settings(dev_time_scale=0.001)
    assert settings.ambiguous_redial_wait_s == settings.twilio_timeout_s
    assert settings.status_poll_wait_s == 2.0
    assert Settings().ambiguous_redial_wait_s == 60.0
    assert Settings().status_poll_wait_s == 120.0


def test_the_time_scale_is_refused_with_twilio() -> None:
    """Real people would be re-dialled seconds after a no-answer."""
    with pytest.raises(ValidationError, match="DEV_TIME_SCALE is for the simulator only"):
        Settings(provider="twilio", twilio_auth_token="f" * 32, dev_time_scale=0.01)
    assert Settings(provider="twilio", twilio_auth_token="f" * 32).dev_time_scale == 1.0
