"""Caps, crashes and lost state: several workers, SIGKILL mid-campaign, Redis flushed."""

from __future__ import annotations

import os
import random
import signal
import time

from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_clean_end, report, start_campaign, wait_finished
from tests.e2e.test_faults import FAULTS


def test_caps_hold_in_every_scope_with_several_workers(stack: Stack) -> None:
    for _ in range(3):
        stack.start_worker(concurrency=3)
    first = start_campaign(stack, 50, account_cap=6, max_concurrency=4, max_attempts=1)
    second = start_campaign(
        stack, 50, account_cap=6, max_concurrency=4, max_attempts=1, first_contact=50
    )
    for account_id, campaign_id in (first, second):
        wait_finished(stack, account_id, campaign_id)
    for account_id, campaign_id in (first, second):
        stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
    # The carrier never saw more calls at once than the account's cap, though each
    # campaign alone could have had 4 and several pacer rounds ran on several workers.
    assert stats["max_concurrent"] <= 6
    assert stats["max_concurrent"] >= 4  # and the pool was used, not starved


def test_sigkill_of_workers_mid_campaign_loses_nothing_and_dials_nobody_twice(stack: Stack) -> None:
    stack.sim("POST", "/_sim/config", json={"faults": FAULTS, "slow_delay_s": 3.0})
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    stack.start_beat()
    account_id, campaign_id = start_campaign(
        stack, 80, account_cap=8, max_concurrency=8, max_attempts=2, dial_retries=6
    )
    rng = random.Random(5)
    for _ in range(3):
        time.sleep(rng.uniform(1.0, 3.0))
        victim = rng.choice([w for w in stack.workers if w.poll() is None])
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        stack.start_worker(concurrency=4)
    final = wait_finished(stack, account_id, campaign_id, timeout_s=180)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=2)
    assert sum(final["outcomes"].values()) == 80
    assert stats["max_concurrent"] <= 8
    assert stats["calls_created"] == final["calls_placed"]


def test_redis_flush_mid_campaign_rebuilds_the_pool(stack: Stack) -> None:
    stack.start_worker(concurrency=4)
    stack.start_beat()
    account_id, campaign_id = start_campaign(
        stack, 80, account_cap=5, max_concurrency=5, max_attempts=1
    )
    deadline = time.monotonic() + 30
    while report(stack, account_id, campaign_id)["calls_placed"] < 15:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stack.runtime.redis.flushdb()  # as a Redis restart without persistence would
    wait_finished(stack, account_id, campaign_id, timeout_s=120)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
    assert stats["max_concurrent"] <= 5
    logs = "".join(p.read_text() for p in stack.log_dir.glob("worker-*.log"))
    assert logs.count("pool_rebuilt") >= 2  # at start, and after the flush
