"""Account limits (CPS queueing, concurrency) and the stats that witness them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.simulator.support import TERMINAL, run_receiver, run_sim
from tests.support import wait_until


def test_cps_limit_queues_calls_and_initiates_them_at_the_rate() -> None:
    cps, calls = 20.0, 8
    with run_receiver() as receiver, run_sim(cps_limit=cps, outcomes_by_number={}) as sim:
        statuses = []
        for n in range(calls):
            response = sim.create(
                To=f"+1555123{n:04d}",
                StatusCallback=f"{receiver.base_url}/status",
                StatusCallbackEvent="initiated",
            )
            statuses.append(response.json()["status"])
        assert statuses == ["queued"] * calls  # created at once, none refused
        receiver.wait_for(lambda: len(receiver.requests) == calls)
        times = sorted(r.at for r in receiver.requests)
        # n calls leave the queue over (n - 1) / cps seconds at the least.
        assert times[-1] - times[0] >= (calls - 1) / cps * 0.8
        assert sim.stats()["max_cps"] == calls  # created, all within one second


def test_concurrency_limit_refuses_with_10004() -> None:
    long_talk = {f"+1555123000{n}": 10_000.0 for n in range(3)}
    with run_sim(
        time_scale=0.01,
        concurrency_limit=2,
        outcomes_by_number=dict.fromkeys(long_talk, "human"),
        talk_seconds_by_number=long_talk,
    ) as sim:
        assert sim.create(To="+15551230000").status_code == 201
        assert sim.create(To="+15551230001").status_code == 201
        refused = sim.create(To="+15551230002")
        assert refused.status_code == 429
        assert refused.json()["code"] == 10004
        stats = sim.stats()
        assert stats["live"] == 2
        assert stats["max_concurrent"] == 2
        assert stats["rejected_by_code"] == {"10004": 1}


def test_stats_count_dials_statuses_and_concurrency() -> None:
    numbers = ["+15551230001", "+15551230002", "+15551230001", "+15551230003", "+15551230001"]
    forced = {
        "+15551230001": "busy",
        "+15551230002": "failed",
        "+15551230003": "no-answer",
    }
    with run_sim(outcomes_by_number=forced) as sim, ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda to: sim.create(To=to), numbers))
        assert all(response.status_code == 201 for response in responses)
        wait_until(lambda: sim.stats()["live"] == 0)
        stats = sim.stats()
        assert stats["calls_created"] == 5
        assert stats["create_requests"] == 5
        assert stats["max_dials_per_number"] == 3
        assert stats["numbers_dialed_more_than_once"] == 1
        assert stats["numbers_dialed"] == 3
        assert stats["by_status"] == {"busy": 3, "failed": 1, "no-answer": 1}
        assert 1 <= stats["max_concurrent"] <= 5
        assert stats["max_cps"] >= 1
        assert set(stats["by_status"]) <= TERMINAL
