"""Frequency-cap benchmark: the cost of the pacer's per-batch check (`dialer.frequency.
recent_calls`) against an account's call history, on a scratch PostgreSQL database.

The account has `--numbers` numbers, each called `--calls` times spread over the last 30
days (every attempt one that may have rung it), so the history has numbers x calls rows.
A claimed batch is 100 numbers drawn at random; the check is timed for the old shape (3 a
day) and for rolling limits (1 a day and 3 in 30 days; 2 a day, 4 a week and 6 in 30
days), with the index buffers one statement reads (`EXPLAIN (ANALYZE, BUFFERS)`).

Usage: python -m bench.frequency [--numbers 20000] [--calls 10] [--batches 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from bench import scratch_database
from dialer.frequency import Cap, recent_calls
from models import Account, CallerId, Campaign, CampaignStatus, transaction, utcnow

SERVER = "postgresql+psycopg://root@127.0.0.1:5432"
DATABASE = "dialer_bench_frequency"
BATCH = 100
SHAPES = {
    "3/1": [Cap(3, 1)],
    "1/1 3/30": [Cap(1, 1), Cap(3, 30)],
    "2/1 4/7 6/30": [Cap(2, 1), Cap(4, 7), Cap(6, 30)],
}


def number(i: int) -> str:
    return f"+1212{i:07d}"


def load(url: str, numbers: int, calls: int) -> int:
    """An account whose `numbers` numbers each had `calls` attempts in the last 30 days."""
    with transaction(url) as session:
        account = Account(name="bench", max_concurrency=100, cps=100.0)
        session.add(account)
        session.flush()
        caller_id = CallerId(account_id=account.id, e164="+15005550006")
        session.add(caller_id)
        session.flush()
        campaign = Campaign(
            account_id=account.id,
            caller_id_id=caller_id.id,
            name="history",
            message="Hello.",
            status=CampaignStatus.COMPLETED,
        )
        session.add(campaign)
        session.flush()
        ids = {"a": account.id, "c": campaign.id, "n": numbers, "k": calls}
        session.execute(
            text(
                "INSERT INTO call_jobs (campaign_id, account_id, line_no, phone_e164, status, "
                "variables, attempt_count, dial_error_count) "
                "SELECT :c, :a, i + 2, '+1212' || lpad(i::text, 7, '0'), 'done', '{}', 0, 0 "
                "FROM generate_series(0, :n - 1) i"
            ),
            ids,
        )
        session.execute(
            text(
                "INSERT INTO call_attempts (job_id, campaign_id, account_id, attempt_no, "
                "phone_e164, from_e164, status, created_at, lease_expires_at, task_failures, "
                "last_sequence) "
                "SELECT j.id, :c, :a, k, j.phone_e164, '+15005550006', 'completed', "
                "now() - random() * interval '30 days', now(), 0, -1 "
                "FROM call_jobs j, generate_series(1, :k) k WHERE j.campaign_id = :c"
            ),
            ids,
        )
        session.execute(text("ANALYZE call_attempts"))
        return account.id


def run(numbers: int, calls: int, batches: int) -> None:
    url = scratch_database(SERVER, DATABASE)
    account_id = load(url, numbers, calls)
    rng = random.Random(7)
    print(f"history: {numbers} numbers x {calls} calls in 30 days = {numbers * calls} attempts")
    print(f"{'caps':>14} {'p50 ms':>7} {'p95 ms':>7} {'ms/number':>9} {'buffers':>8}")
    for label, caps in SHAPES.items():
        times = []
        with transaction(url) as session:
            for _ in range(batches):
                phones = [number(rng.randrange(numbers)) for _ in range(BATCH)]
                started = time.perf_counter()
                recent_calls(session, account_id, phones, utcnow(), caps)
                times.append((time.perf_counter() - started) * 1000)
            buffers = _buffers(session, account_id, [number(i) for i in range(BATCH)], caps)
        p50 = statistics.median(times)
        p95 = sorted(times)[int(len(times) * 0.95) - 1]
        print(f"{label:>14} {p50:7.2f} {p95:7.2f} {p50 / BATCH:9.4f} {buffers:8d}")


def _buffers(session: Session, account_id: int, phones: list[str], caps: list[Cap]) -> int:
    """Shared buffers one check reads (hit + read), from its plan."""
    longest = max(c.days for c in caps)
    most = max(c.calls for c in caps)
    plan = session.execute(
        text(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
            "SELECT n.phone, r.created_at FROM unnest(CAST(:phones AS varchar[])) n(phone) "
            "JOIN LATERAL (SELECT created_at FROM call_attempts WHERE account_id = :a "
            "AND phone_e164 = n.phone AND created_at > now() - :d AND created_at <= now() "
            "AND status <> 'not-placed' ORDER BY created_at DESC LIMIT :m) r ON true"
        ),
        {"phones": phones, "a": account_id, "d": timedelta(days=longest), "m": most},
    ).scalar_one()
    top = plan[0]["Plan"]
    return int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    run(args.numbers, args.calls, args.batches)


if __name__ == "__main__":
    main()
