"""Benchmark the campaign report and the exports on a million-contact campaign.

Creates and migrates a scratch database (`--database`, default `dialer_bench_report`,
dropped first), loads one running campaign of `--contacts` contacts (default 1,000,000)
and their attempts (about 1.3 per contact: people, machines, busy, no-answer, failed
calls, DNC, contacts still pending, retrying or live, spread over the last three hours)
with COPY and the counting triggers off (`session_replication_role = replica`), then
derives the counters with one backfill (`campaigns.counters.backfill`, the same functions
the triggers apply), and prints:

- report latency: p50 and p95 of `--calls` calls of `campaigns.reports.campaign_report`
  (one transaction each, Redis pool included); target <= 100 ms;
- the counters against a recount from scratch (must agree), and the recount's time: what
  each report would cost without the counters;
- export throughput (rows/s) and peak RSS of the per-contact and the per-attempt exports,
  each run in a fresh child process writing to /dev/null (the peak includes imports; the
  RSS at the start of the export is printed beside it);
- the webhook's fast path (`CallbackBatcher`, in this process, no HTTP) with the counting
  triggers on and off in alternate blocks on one scratch database: callbacks/s each way and
  their ratio, the machine's drift cancelled by the interleaving; target >= 0.90;
- the same through HTTP: `bench/callbacks.py` run alternately with and without the
  counting triggers (`--without-counting`; `--rounds` times each way, short runs), and
  the median webhook rates compared; target: with / without >= 0.90. The median CPU per
  callback (API and PostgreSQL) each way is printed too: the same cost as a ratio that a
  busy machine distorts less than it does the rates; and the triggers' share of that CPU
  in the runs with them, by PostgreSQL's own timing of the trigger functions: the cost
  with no second run to compare against.

Usage: python -m bench.report [--contacts N] [--calls N] [--database NAME] [--redis URL]
                              [--rounds N] [--reuse]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench import scratch_database, set_counting
from campaigns import counters
from campaigns.reports import campaign_report, export_attempts, export_results
from dialer.pool import Pool
from models import Account, CallerId, Campaign, CampaignStatus, engine_for, transaction

DATABASE = "dialer_bench_report"
REDIS_DB = 14
ROOT = Path(__file__).resolve().parent.parent

OUTCOMES = (
    # (share, job status, outcome, attempt statuses oldest first, AnsweredBy of the last)
    (0.40, "done", "answered", ("completed",), None),
    (0.05, "done", "answered", ("no-answer", "completed"), "human"),
    (0.12, "done", "machine", ("completed",), "machine_start"),
    (0.03, "done", "machine", ("completed",), "machine_end_beep"),
    (0.06, "done", "busy", ("busy", "busy"), None),
    (0.12, "done", "no-answer", ("no-answer", "no-answer"), None),
    (0.03, "done", "failed", ("failed",), None),
    (0.01, "done", "do_not_call", ("not-placed",), None),
    (0.04, "pending", "no-answer", ("no-answer",), None),
    (0.14, "pending", None, (), None),
)
"""The campaign's contacts by share; the last few contacts are left in progress."""
LIVE = 50
"""Contacts with a call live (in progress) at the end."""


def _ts(at: datetime) -> str:
    return at.isoformat()


def seed(url: str, contacts: int, seed: int = 7) -> tuple[int, int, int]:
    """The account, its running campaign and the rows; returns (account id, campaign id,
    attempts)."""
    with transaction(url) as session:
        account = Account(name="bench", max_concurrency=100, cps=50.0)
        session.add(account)
        session.flush()
        caller_id = CallerId(account_id=account.id, e164="+15005550006")
        session.add(caller_id)
        session.flush()
        start = datetime.now(UTC) - timedelta(hours=3)
        campaign = Campaign(
            account_id=account.id,
            caller_id_id=caller_id.id,
            name="bench: a million reminders",
            message="Hello {first_name}.",
            status=CampaignStatus.RUNNING,
            max_concurrency=100,
            max_attempts=2,
            started_at=start,
            ingest_summary={"rows": contacts + 1000, "accepted": contacts, "rejected": {}},
        )
        session.add(campaign)
        session.flush()
        account_id, campaign_id = account.id, campaign.id
    rng = random.Random(seed)
    weights = [share for share, *_ in OUTCOMES]
    jobs, attempts = io.StringIO(), io.StringIO()
    attempt_id = 0
    step_s = 3 * 3600 / contacts  # dials spread evenly over the three hours
    for i in range(1, contacts + 1):
        phone = f"+1212{i:07d}"
        if i > contacts - LIVE:
            kind = (0, "in_progress", None, ("in-progress",), "human")
        else:
            kind = rng.choices(OUTCOMES, weights)[0]
        _, status, outcome, tries, answered_by = kind
        placed = start + timedelta(seconds=i * step_s)
        count = sum(1 for t in tries if t != "not-placed")
        jobs.write(
            f"{i}\t{campaign_id}\t{account_id}\t{i + 1}\t{phone}\t"
            f'{{"first_name": "Ada {i}"}}\t{status}\t{outcome or chr(92) + "N"}\t{count}\t0\t'
            f"{_ts(placed + timedelta(hours=1) if status == 'pending' and tries else placed)}\n"
        )
        for n, attempt_status in enumerate(tries, 1):
            attempt_id += 1
            at = placed + timedelta(minutes=10 * (n - 1))
            last = n == len(tries)
            call = attempt_status != "not-placed"
            talk = rng.randint(5, 240) if attempt_status == "completed" else 0
            answered = attempt_status in ("completed", "in-progress")
            ended = attempt_status != "in-progress"
            end_at = at + timedelta(seconds=20 + talk)
            fields = [
                attempt_id,
                i,
                campaign_id,
                account_id,
                n,
                phone,
                "+15005550006",
                attempt_status,
                f"CA{attempt_id:032x}" if call else "\\N",
                (answered_by if last and answered else None) or "\\N",
                rng.choice("12") if answered and rng.random() < 0.3 else "\\N",
                _ts(at),
                _ts(at),
                _ts(at + timedelta(seconds=20)) if answered else "\\N",
                _ts(end_at) if ended else "\\N",
                talk if call and ended else "\\N",
                _ts(at + timedelta(hours=1)),
                _ts(at - timedelta(seconds=rng.expovariate(1.0))),
                3 if ended else 2,
                0,
            ]
            attempts.write("\t".join(str(f) for f in fields) + "\n")
    raw = engine_for(url).raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET session_replication_role = replica")  # no triggers, no FK checks
        with cursor.copy(
            "COPY call_jobs (id, campaign_id, account_id, line_no, phone_e164, variables,"
            " status, outcome, attempt_count, dial_error_count, next_due_at) FROM STDIN"
        ) as copy:
            copy.write(jobs.getvalue())
        with cursor.copy(
            "COPY call_attempts (id, job_id, campaign_id, account_id, attempt_no, phone_e164,"
            " from_e164, status, call_sid, answered_by, digits, created_at, placed_at,"
            " answered_at, ended_at, duration_s, lease_expires_at, due_at, last_sequence,"
            " task_failures) FROM STDIN"
        ) as copy:
            copy.write(attempts.getvalue())
        cursor.execute("SET session_replication_role = origin")
        cursor.execute(f"SELECT setval('call_jobs_id_seq', {contacts})")
        cursor.execute(f"SELECT setval('call_attempts_id_seq', {max(attempt_id, 1)})")
        raw.commit()
        cursor.execute("ANALYZE call_jobs")
        cursor.execute("ANALYZE call_attempts")
        raw.commit()
    finally:
        raw.close()
    return account_id, campaign_id, attempt_id


def _peak_rss_mb() -> float:
    """This process's peak resident set (`VmHWM`: unlike `ru_maxrss`, not inherited from
    the parent that forked it), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _export_child(url: str, account_id: int, campaign_id: int, which: str) -> None:
    start_rss = _peak_rss_mb()
    write = export_attempts if which == "attempts" else export_results
    started = time.perf_counter()
    with transaction(url) as session, open(os.devnull, "w", newline="") as sink:
        rows = write(session, account_id, campaign_id, sink)
    seconds = time.perf_counter() - started
    print(
        f"export {which:<9}{rows:>10} rows {rows / seconds:>10,.0f} rows/s"
        f"   peak RSS {_peak_rss_mb():.0f} MB ({start_rss:.0f} MB at its start)",
        flush=True,
    )


def _webhook_run(
    database: str, redis_url: str, counting: bool
) -> tuple[float, float, float | None]:
    """One short `bench/callbacks.py` run, with or without the counting triggers: its
    webhook rate (callbacks/s), CPU milliseconds per callback (API and PostgreSQL), and,
    with them, the triggers' share of that CPU by PostgreSQL's own timing."""
    command = [sys.executable, "-m", "bench.callbacks", "--attempts", "3000"]
    command += ["--duration", "20", "--database", database, "--redis", redis_url]
    output = subprocess.run(
        command + ([] if counting else ["--without-counting"]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,  # it exits 1 when not every call was driven in time: the rate stands
    ).stdout
    match = re.search(r"^webhook\s+\d+\s+(\d+)\s+\S+\s+\S+\s+(\S+)\s+(\S+)", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no webhook figures in:\n{output}")
    share = re.search(r"^counting triggers: .*?, ([\d.]+)% of the webhook's CPU", output, re.M)
    return float(match[1]), float(match[2]) + float(match[3]), float(share[1]) if share else None


async def _drive(
    url: str, runtime: Any, attempts: list[tuple[int, str]], concurrency: int
) -> float:
    """Apply each attempt's four status callbacks through the webhook's fast path (one
    `CallbackBatcher`, as an API process has), `concurrency` calls at a time; returns
    callbacks per second."""
    from bench.callbacks import EVENTS
    from dialer.dispatch.callbacks import CallbackBatcher, CallbackKind
    from dialer.web.routers.providers import WEBHOOK_POOL_SIZE
    from models.asyncdb import async_pool

    pool = async_pool(url, WEBHOOK_POOL_SIZE)
    await pool.open(wait=True)
    batcher = CallbackBatcher(pool, runtime)
    queue = list(reversed(attempts))

    async def one_call() -> None:
        while queue:
            attempt_id, sid = queue.pop()
            for call_status, sequence in EVENTS:
                params = {
                    "CallSid": sid,
                    "CallStatus": call_status,
                    "SequenceNumber": str(sequence),
                    "Timestamp": f"Sat, 21 Nov 2026 12:00:{10 * sequence:02d} +0000",
                }
                if call_status == "completed":
                    params["CallDuration"] = "30"
                await batcher.record(attempt_id, CallbackKind.STATUS, params)

    started = time.perf_counter()
    await asyncio.gather(*(one_call() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    await pool.close()
    return 4 * len(attempts) / seconds


def fast_path_ratio(server: str, database: str, redis_url: str, rounds: int, calls: int) -> None:
    """The webhook's fast path in this process (no HTTP), with the counting triggers on and
    off in alternate blocks of `calls` calls on one database: the cost of keeping the
    counters current, with the machine's drift cancelled by the interleaving."""
    from bench.callbacks import seed as seed_calls
    from dialer.runtime import Runtime
    from dialer.settings import Settings

    url = scratch_database(server, database)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    attempts = seed_calls(url, Pool(client), calls * (2 * rounds + 1))
    runtime = Runtime(Settings(database_url=url, redis_url=redis_url))
    blocks = [attempts[i : i + calls] for i in range(0, len(attempts), calls)]
    asyncio.run(_drive(url, runtime, blocks.pop(0), 16))  # warm-up
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for enabled in (False, True):
            set_counting(url, enabled)
            rates[enabled].append(asyncio.run(_drive(url, runtime, blocks.pop(0), 16)))
    set_counting(url, True)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(
        f"fast path in process, {rounds} x {calls} calls each way: callbacks/s with the"
        f" counting triggers {on:,.0f}, without {off:,.0f}; ratio {on / off:.2f}"
        " (target >= 0.90)",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=30, help="report calls measured")
    parser.add_argument("--server", default="postgresql+psycopg://root@127.0.0.1:5432")
    parser.add_argument("--database", default=DATABASE, help="scratch database (dropped first)")
    parser.add_argument("--redis", default=f"redis://127.0.0.1:6379/{REDIS_DB}")
    parser.add_argument("--rounds", type=int, default=3, help="callbacks bench runs each way")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the database a previous run seeded"
    )
    parser.add_argument("--fast-rounds", type=int, default=5, help="fast-path blocks each way")
    parser.add_argument("--fast-calls", type=int, default=300, help="calls per fast-path block")
    args = parser.parse_args(argv)

    if args.reuse:
        url, account_id, campaign_id = f"{args.server}/{args.database}", 1, 1
    else:
        url = scratch_database(args.server, args.database)
        started = time.perf_counter()
        account_id, campaign_id, attempts = seed(url, args.contacts)
        print(
            f"seeded {args.contacts:,} contacts and {attempts:,} attempts with COPY"
            f" in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        started = time.perf_counter()
        with transaction(url) as session:
            counters.backfill(session, campaign_id)
        print(f"counters backfilled in {time.perf_counter() - started:.1f} s", flush=True)

    pool = Pool(redis.Redis.from_url(args.redis))
    latencies = []
    for _ in range(args.calls + 2):
        started = time.perf_counter()
        with transaction(url) as session:
            report = campaign_report(session, pool, account_id, campaign_id)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies = sorted(latencies[2:])  # the first two warm the pools and caches
    p95 = latencies[min(len(latencies) - 1, round(0.95 * len(latencies)) - 1)]
    print(
        f"report latency over {args.calls} calls: p50 {statistics.median(latencies):.1f} ms,"
        f" p95 {p95:.1f} ms (target <= 100 ms); {report.contacts.total:,} contacts,"
        f" {report.attempts.calls_placed:,} calls placed",
        flush=True,
    )
    started = time.perf_counter()
    with transaction(url) as session:
        kept, _ = counters.read(session, campaign_id, datetime.now(UTC))
        recounted, _ = counters.recount(session, campaign_id)
    recount_s = time.perf_counter() - started
    agree = "agree" if kept == recounted else "DISAGREE"
    print(f"counters and a recount from scratch {agree}; the recount took {recount_s:.2f} s")

    engine_for(url).dispose()
    context = multiprocessing.get_context("spawn")
    for which in ("contacts", "attempts"):
        child = context.Process(target=_export_child, args=(url, account_id, campaign_id, which))
        child.start()
        child.join()

    fast_path_ratio(
        args.server, f"{args.database}_fastpath", args.redis, args.fast_rounds, args.fast_calls
    )
    database = f"{args.database}_callbacks"
    runs: dict[bool, list[tuple[float, float, float | None]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for counting in (False, True):
            runs[counting].append(_webhook_run(database, args.redis, counting))
    rate = {k: statistics.median(r for r, _, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c, _ in v) for k, v in runs.items()}
    shares = [s for _, _, s in runs[True] if s is not None]
    print(
        f"callbacks bench (HTTP), webhook rate/s with the counting triggers"
        f" {[r for r, _, _ in runs[True]]}, without {[r for r, _, _ in runs[False]]}; median"
        f" with / without = {rate[True] / rate[False]:.2f} (target >= 0.90); CPU ms per callback"
        f" (API + PostgreSQL) with {cpu[True]:.3f}, without {cpu[False]:.3f}: without / with ="
        f" {cpu[False] / cpu[True]:.2f} (the same ratio, as the machine's load leaves it)"
    )
    if shares:
        print(
            f"the counting triggers' share of the webhook's CPU per callback, by PostgreSQL's"
            f" own timing: {shares} %, median {statistics.median(shares):.1f} %"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
