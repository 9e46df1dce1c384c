"""A campaign CSV dialled end to end: ingest, pacer, pool, place_call, callbacks, report."""

from __future__ import annotations

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
    assert final["outcomes"]["human"] > 0


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
