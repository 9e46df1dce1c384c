"""A campaign CSV dialled end to end: ingest, pacer, pool, place_call, callbacks, report."""

from __future__ import annotations

from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_clean_end, start_campaign, wait_finished


def test_campaign_runs_to_the_end_within_the_caps(stack: Stack) -> None:
    stack.start_worker(concurrency=4)
    account_id, campaign_id = start_campaign(
        stack, 60, account_cap=6, max_concurrency=5, max_attempts=3
    )
    final = wait_finished(stack, account_id, campaign_id)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=3)
    assert final["status"] == "completed"
    assert final["contacts"] == 60
    assert sum(final["outcomes"].values()) == 60
    assert stats["max_concurrent"] <= 5
    assert stats["calls_created"] == final["calls_placed"]
    assert final["outcomes"].get("answered", 0) > 0
