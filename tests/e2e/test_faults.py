"""Dialling through a misbehaving carrier: 502 before and after create, 429, slow replies,
lost, duplicated and reordered callbacks. The simulator is the witness of double dials."""

from __future__ import annotations

from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_clean_end, outcomes, start_campaign, wait_finished

FAULTS = {
    "502-before": 0.08,
    "502-after": 0.08,
    "429": 0.08,
    "slow": 0.1,  # with ~80 creates, P(no slow reply at all) < 0.1%
    "callback-lost": 0.05,
    "callback-duplicate": 0.1,
    "callback-reorder": 0.1,
}


def test_every_contact_ends_and_nobody_is_rung_twice_per_attempt(stack: Stack) -> None:
    stack.sim("POST", "/_sim/config", json={"faults": FAULTS, "slow_delay_s": 3.0})
    stack.start_worker(concurrency=6)
    stack.start_beat()
    account_id, campaign_id = start_campaign(
        stack, 60, account_cap=8, max_concurrency=8, max_attempts=2, dial_retries=6
    )
    final = wait_finished(stack, account_id, campaign_id, timeout_s=150)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=2)
    assert stats["max_concurrent"] <= 8
    assert sum(outcomes(final).values()) == 60
    injected = stats["faults_injected"]
    assert injected.get("502-after", 0) > 0 and injected.get("slow", 0) > 0
    # Ambiguous creates were adopted, not re-sent: every call the carrier made is one of ours.
    assert stats["calls_created"] == final["attempts"]["calls_placed"]


def test_watchdog_hangs_up_calls_past_the_hold_cap(stack: Stack) -> None:
    numbers = ["+12015550100", "+12015550101"]
    stack.sim(
        "POST",
        "/_sim/config",
        json={
            "outcomes_by_number": dict.fromkeys(numbers, "human"),
            "talk_seconds_by_number": dict.fromkeys(numbers, 100_000),
        },
    )
    stack.start_worker(concurrency=2)
    stack.start_beat()
    account_id, campaign_id = start_campaign(
        stack, 2, max_hold_s=2, max_attempts=1, time_limit_s=14_400
    )
    final = wait_finished(stack, account_id, campaign_id, timeout_s=60)
    assert outcomes(final) == {"hold_cap": 2}
    assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
