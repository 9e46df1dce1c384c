"""A circuit breaker trip is counted per campaign it paused, by the provider's code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from dialer.dispatch.dialing import PlaceResult, place_call
from dialer.runtime import Runtime
from dialer.simulator import SimulatorConfig, run_in_thread
from models import CampaignStatus, JobStatus, transaction
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.support import hold_lease


@pytest.fixture
def runtime_settings() -> Iterator[dict[str, Any]]:
    with run_in_thread(SimulatorConfig(time_scale=0.001, seed=3)) as url:
        yield {"twilio_base_url": url, "public_base_url": "http://127.0.0.1:9"}


def trips(code: str) -> float:
    return REGISTRY.get_sample_value("dialer_breaker_trips_total", {"code": code}) or 0.0


def test_a_trip_counts_every_campaign_it_paused(runtime: Runtime) -> None:
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session)
        campaign = make_campaign(session, account, status=CampaignStatus.RUNNING)
        make_campaign(session, account, status=CampaignStatus.RUNNING)
        make_campaign(session, account, status=CampaignStatus.DRAFT)
        # The simulator answers 21215 (geo permission: an account error) for this number.
        job = make_job(session, campaign, "+15005550003", status=JobStatus.IN_PROGRESS)
        attempt_id = make_attempt(session, job).id
    hold_lease(runtime, attempt_id)
    before = trips("21215")
    assert place_call(runtime, attempt_id) is PlaceResult.BREAKER_TRIPPED
    assert trips("21215") == before + 2
