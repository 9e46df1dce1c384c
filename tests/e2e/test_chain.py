"""A campaign CSV dialled end to end: ingest, pacer, pool, place_call, callbacks, report."""

from __future__ import annotations

from sqlalchemy import select

from models import CallAttempt, transaction
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_clean_end, outcomes, start_campaign, wait_finished


def test_campaign_runs_to_the_end_within_the_caps(stack: Stack) -> None:
    stack.start_worker(concurrency=4)
    account_id, campaign_id = start_campaign(
        stack, 60, account_cap=6, max_concurrency=5, max_attempts=3
    )
    final = wait_finished(stack, account_id, campaign_id)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=3)
    assert final["status"] == "completed"
    assert final["contacts"]["total"] == 60
    assert sum(outcomes(final).values()) == 60
    assert stats["max_concurrent"] <= 5
    assert stats["calls_created"] == final["attempts"]["calls_placed"]
    assert final["outcomes"]["answered"] > 0


def test_machines_are_hung_up_when_the_campaign_says_so(stack: Stack) -> None:
    numbers = ["+12015550100", "+12015550101"]
    stack.sim(
        "POST",
        "/_sim/config",
        json={
            "outcomes_by_number": dict.fromkeys(numbers, "machine_end_beep"),
            "talk_seconds_by_number": dict.fromkeys(numbers, 3_000),
        },
    )
    stack.start_worker(concurrency=2)
    account_id, campaign_id = start_campaign(
        stack, 2, machine_detection=True, max_attempts=1, time_limit_s=14_400
    )
    final = wait_finished(stack, account_id, campaign_id, timeout_s=60)
    # AMD in `Enable` mode answers as soon as it hears a machine (Twilio: machine_start).
    assert outcomes(final) == {"machine.machine_start": 2}
    # Hung up on the AMD result, long before the 3,000 s greeting-and-message would end.
    assert final["talk_time"]["total_s"] < 2 * 300
    assert_clean_end(stack, account_id, campaign_id, max_attempts=1)


def test_an_attempts_times_stay_in_order_under_the_simulators_time_scale(stack: Stack) -> None:
    # At time scale 0.005 a call of a simulated minute lasts 0.3 s of wall time, yet its
    # `CallDuration` says 60 s: an answer worked back from the end (end - duration) fell a
    # minute before the attempt was created.
    stack.sim("POST", "/_sim/config", json={"outcome_weights": {"human": 1.0}})
    stack.start_worker(concurrency=2)
    account_id, campaign_id = start_campaign(stack, 4, max_attempts=1)
    final = wait_finished(stack, account_id, campaign_id, timeout_s=60)
    assert final["outcomes"]["answered"] == 4
    with transaction(stack.runtime.settings.database_url) as session:
        attempts = session.scalars(
            select(CallAttempt).where(CallAttempt.campaign_id == campaign_id)
        ).all()
    assert [a.duration_s > 0 for a in attempts if a.duration_s is not None] == [True] * 4
    for a in attempts:
        assert a.placed_at is not None and a.answered_at is not None and a.ended_at is not None
        assert a.created_at <= a.placed_at <= a.answered_at <= a.ended_at, a.id
