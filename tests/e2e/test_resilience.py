"""Caps, crashes and lost state: several workers, SIGKILL mid-campaign, Redis flushed."""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx

from campaigns.accounts import create_api_key
from models import Account, transaction
from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    assert_clean_end,
    outcomes,
    report,
    start_campaign,
    wait_finished,
)
from tests.e2e.test_faults import FAULTS
from tests.support import wait_until


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
    assert sum(outcomes(final).values()) == 80
    assert stats["max_concurrent"] <= 8
    assert stats["calls_created"] == final["attempts"]["calls_placed"]


def test_redis_flush_mid_campaign_rebuilds_the_pool(stack: Stack) -> None:
    stack.start_worker(concurrency=4)
    stack.start_beat()
    account_id, campaign_id = start_campaign(
        stack, 80, account_cap=5, max_concurrency=5, max_attempts=1
    )
    deadline = time.monotonic() + 30
    while report(stack, account_id, campaign_id)["attempts"]["calls_placed"] < 15:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stack.runtime.redis.flushdb()  # as a Redis restart without persistence would
    wait_finished(stack, account_id, campaign_id, timeout_s=120)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
    assert stats["max_concurrent"] <= 5
    logs = "".join(p.read_text() for p in stack.log_dir.glob("worker-*.log"))
    assert logs.count("pool_rebuilt") >= 2  # at start, and after the flush


def _pool_processes(worker_pid: int) -> list[int]:
    """The prefork pool processes of a Celery worker (its children)."""
    with open(f"/proc/{worker_pid}/task/{worker_pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


def test_frozen_workers_thawed_late_dial_nobody_twice(stack: Stack) -> None:
    """Worker pool processes frozen (SIGSTOP, as a VM pause or a long GC) for longer than
    the stuck-attempt limit mid-campaign, then thawed: what they held when frozen is not
    sent late; every contact is dialled at most once."""
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    stack.start_beat()
    account_id, campaign_id = start_campaign(
        stack, 60, account_cap=8, max_concurrency=8, max_attempts=1, dial_retries=6
    )
    deadline = time.monotonic() + 30
    while report(stack, account_id, campaign_id)["attempts"]["calls_placed"] < 10:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    frozen = _pool_processes(stack.workers[0].pid)
    assert frozen
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(3.0 * 2.5)  # past STUCK_DIALING_AFTER_S (3 s): the reaper acts meanwhile
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)
    final = wait_finished(stack, account_id, campaign_id, timeout_s=180)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
    assert stats["max_dials_per_number"] == 1
    assert stats["max_concurrent"] <= 8
    assert sum(outcomes(final).values()) == 60
    attempts = final["attempts"]
    assert stats["calls_created"] == attempts["calls_placed"] + attempts["late_calls_hung_up"]


def test_creates_processed_after_the_client_gave_up_ring_nobody_twice(stack: Stack) -> None:
    """`slow-before`: the carrier makes the call only after the client timed out (2 s),
    so the lookup finds nothing; the late call is adopted by its own callback."""
    stack.sim("POST", "/_sim/config", json={"faults": {"slow-before": 0.3}, "slow_delay_s": 3.0})
    stack.start_worker(concurrency=6)
    stack.start_beat()
    account_id, campaign_id = start_campaign(
        stack, 40, account_cap=8, max_concurrency=8, max_attempts=1, dial_retries=6
    )
    final = wait_finished(stack, account_id, campaign_id, timeout_s=180)
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
    assert stats["faults_injected"].get("slow-before", 0) > 0
    assert stats["max_dials_per_number"] == 1
    assert stats["max_concurrent"] <= 8
    assert sum(outcomes(final).values()) == 40
    attempts = final["attempts"]
    assert stats["calls_created"] == attempts["calls_placed"] + attempts["late_calls_hung_up"]


def test_cancel_with_hang_up_stops_dials_and_ends_live_calls(stack: Stack) -> None:
    """`POST /v1/campaigns/{id}/cancel?hang_up=true` mid-campaign: live calls are hung up,
    and no call is created more than a second after the cancel commits."""
    # Calls of ~1,000 simulated seconds (5 s at this time scale) outlive the test's wait.
    talk = {"median_s": 1000.0, "sigma": 0.01, "minimum_s": 900.0, "maximum_s": 1100.0}
    stack.sim("POST", "/_sim/config", json={"talk": talk, "outcome_weights": {"human": 1.0}})
    stack.start_worker(concurrency=4)
    stack.start_beat()
    account_id, campaign_id = start_campaign(
        stack, 40, account_cap=6, max_concurrency=6, max_attempts=1
    )
    with transaction(stack.runtime.settings.database_url) as session:
        key = create_api_key(session, session.get_one(Account, account_id), "e2e").key
    deadline = time.monotonic() + 30
    while stack.sim("GET", "/_sim/stats")["live"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    canceled_at = datetime.now(UTC)
    reply = httpx.post(
        f"{stack.api_url}/v1/campaigns/{campaign_id}/cancel?hang_up=true",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "canceled"
    wait_until(lambda: stack.sim("GET", "/_sim/stats")["live"] == 0, 20, "calls to be hung up")
    final = wait_finished(stack, account_id, campaign_id, timeout_s=60)
    assert final["contacts"]["cancelled"] > 0
    stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
    assert stats["hang_ups"] >= 3
    created = [
        parsedate_to_datetime(call["date_created"]) for call in stack.sim("GET", "/_sim/calls")
    ]
    assert max(created) <= canceled_at + timedelta(seconds=1)
