"""Benchmark the signed Twilio status-callback webhook end to end.

Creates and migrates a scratch database (`dialer_bench_callbacks`, dropped first), uses
Redis logical database 13 (flushed first), seeds one running campaign with `--attempts`
live attempts that each hold a lease in the pool, serves the real app (`dialer.web.asgi:app`)
with uvicorn in a subprocess, and drives it from a separate load-generator process with
each attempt's status callbacks in order: initiated (SequenceNumber 0), ringing (1),
in-progress (2), completed (3, with `CallDuration`), every one signed as Twilio signs them
(`RequestValidator(token).compute_signature(url, params)` over the public URL, connection
overrides `#rc=3&rp=all` included; `dialer.dispatch.dialing.CONNECTION_OVERRIDES`). Then prints:

- callbacks accepted per second (HTTP 204), latency p50 and p99 in milliseconds, measured
  by the load generator from writing the request to reading the whole response;
  targets: >= 1,500/s and p99 <= 50 ms on a 2-core machine, generator on the same machine;
- CPU milliseconds per callback of the server's processes (`api ms`) and of the PostgreSQL
  backends serving its database (`pg ms`), from `/proc`: the cost, which a busy machine
  does not distort as it does the rate;
- the PostgreSQL time the campaign counters' triggers took per callback, by PostgreSQL's
  own timing (`track_functions = 'pl'`, over the webhook's warm-up and drive), with their
  share of the webhook's CPU per callback (api ms + pg ms), runs and callbacks per run: the
  counters' cost without the noise of a rate (the end-to-end comparison, triggers on and
  off, is `bench/report.py`'s);
- the same figures, in the same run, for a bare endpoint served the same way (a FastAPI
  POST route on the same path that reads the body and answers 204, in the same uvicorn
  configuration, driven by the same requests): the ceiling of the framework, the server and
  the load generator together, and the ratio of the webhook to it;
- a correctness check: every driven attempt completed, four events stored per attempt, its
  job done, and the pool empty (each lease released once).

The load generator is a raw asyncio HTTP/1.1 client on keep-alive connections (requests
are built and signed before the clock starts), `--concurrency` callbacks in flight at
most: each in-flight slot takes the next attempt and sends its four callbacks one after
another, as a carrier does for one call. The run stops after every attempt or after
`--duration` seconds, whichever comes first. Loopback only.

Usage: python -m bench.callbacks [--attempts N] [--concurrency C] [--workers W] [--database NAME]
                                 [--http auto|h11|httptools] [--loop auto|asyncio|uvloop]
                                 [--without-counting]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import redis
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import func, insert, select
from twilio.request_validator import RequestValidator

from bench import (
    backends,
    counting_time,
    cpu_seconds,
    process_tree,
    scratch_database,
    set_counting,
    track_counting,
)
from campaigns import counters
from dialer.dispatch.dialing import CONNECTION_OVERRIDES
from dialer.pool import Keys, Pool, Scope
from dialer.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN
from models import (
    Account,
    AttemptStatus,
    CallAttempt,
    CallerId,
    CallJob,
    Campaign,
    CampaignStatus,
    JobStatus,
    ProviderEvent,
    engine_for,
    transaction,
    utcnow,
)

DATABASE = "dialer_bench_callbacks"
REDIS_DB = 13
PUBLIC_BASE_URL = "https://dialer.bench.test"
WARMUP_ATTEMPTS = 200
"""Attempts driven before the clock starts (imports, pools, caches), checked like the rest."""
EVENTS = (("initiated", 0), ("ringing", 1), ("in-progress", 2), ("completed", 3))
"""Twilio `CallStatus` and `SequenceNumber` of one answered call's callbacks, in order."""
ROOT = Path(__file__).resolve().parent.parent

bare_app = FastAPI()
"""The reference: the webhook's path on the same framework, reading the body, answering 204."""


@bare_app.post("/v1/providers/twilio/status/{attempt_id}")
async def _bare_status(request: Request, attempt_id: int) -> Response:
    await request.body()
    return Response(status_code=204)


@bare_app.get("/healthz")
async def _bare_health() -> dict[str, str]:
    return {"status": "ok"}


# --- setup -------------------------------------------------------------------------------


def seed(database_url: str, pool: Pool, attempts: int) -> list[tuple[int, str]]:
    """One account and running campaign with `attempts` live attempts (status `queued`, call
    sid known, lease held), as the pacer and `place_call` leave them. Returns (id, sid)s."""
    with transaction(database_url) as session:
        account = Account(name="bench", max_concurrency=attempts + 10, cps=1000.0)
        session.add(account)
        session.flush()
        caller = CallerId(account_id=account.id, e164="+15005550006")
        session.add(caller)
        session.flush()
        campaign = Campaign(
            account_id=account.id,
            caller_id_id=caller.id,
            name="bench",
            status=CampaignStatus.RUNNING,
            message="Your appointment is tomorrow at nine.",
            max_concurrency=attempts + 10,
            max_attempts=3,
            retry_policy={},
            ingest_summary={},
        )
        session.add(campaign)
        session.flush()
        phones = [
            f"+1212555{index:04d}" if index < 10_000 else f"+1646{index:07d}"
            for index in range(attempts)
        ]
        job_ids = session.scalars(
            insert(CallJob).returning(CallJob.id, sort_by_parameter_order=True),
            [
                {
                    "campaign_id": campaign.id,
                    "account_id": account.id,
                    "line_no": index + 2,
                    "phone_e164": phone,
                    "variables": {},
                    "status": JobStatus.IN_PROGRESS,
                    "attempt_count": 1,
                }
                for index, phone in enumerate(phones)
            ],
        ).all()
        sids = [f"CA{index:032x}" for index in range(attempts)]
        expires = utcnow() + timedelta(hours=1)
        attempt_ids = session.scalars(
            insert(CallAttempt).returning(CallAttempt.id, sort_by_parameter_order=True),
            [
                {
                    "job_id": job_id,
                    "campaign_id": campaign.id,
                    "account_id": account.id,
                    "attempt_no": 1,
                    "phone_e164": phone,
                    "from_e164": caller.e164,
                    "status": AttemptStatus.QUEUED,
                    "call_sid": sid,
                    "lease_expires_at": expires,
                }
                for job_id, phone, sid in zip(job_ids, phones, sids, strict=True)
            ],
        ).all()
        keys = Keys(account.id)
        scopes = [
            Scope(keys.account_pool(), attempts + 10),
            Scope(keys.campaign_pool(campaign.id), attempts + 10),
        ]
        for attempt_id in attempt_ids:
            if not pool.acquire(str(attempt_id), 3600, scopes, []):
                raise RuntimeError("could not take a lease while seeding")
    return list(zip(attempt_ids, sids, strict=True))


def build_requests(attempts: Sequence[tuple[int, str]], port: int) -> list[list[bytes]]:
    """Per attempt, its four signed callbacks as raw HTTP/1.1 requests (keep-alive)."""
    validator = RequestValidator(SIMULATOR_AUTH_TOKEN)
    out: list[list[bytes]] = []
    for attempt_id, sid in attempts:
        path = f"/v1/providers/twilio/status/{attempt_id}"
        requests: list[bytes] = []
        for call_status, sequence in EVENTS:
            params = {
                "AccountSid": SIMULATOR_ACCOUNT_SID,
                "ApiVersion": "2010-04-01",
                "CallSid": sid,
                "CallStatus": call_status,
                "Called": "+12125550143",
                "Caller": "+15005550006",
                "Direction": "outbound-api",
                "From": "+15005550006",
                "SequenceNumber": str(sequence),
                "Timestamp": f"Sat, 21 Nov 2026 12:00:{10 * sequence:02d} +0000",
                "To": "+12125550143",
            }
            if call_status == "completed":
                params["CallDuration"] = "30"
            signature = validator.compute_signature(
                PUBLIC_BASE_URL + path + CONNECTION_OVERRIDES, params
            )
            body = urlencode(params).encode()
            head = (
                f"POST {path} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                "User-Agent: TwilioProxy/1.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"X-Twilio-Signature: {signature}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            requests.append(head.encode() + body)
        out.append(requests)
    return out


# --- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerConfig:
    """How uvicorn serves both apps (one subprocess, `workers` worker processes)."""

    workers: int
    http: str
    loop: str


def serve(
    app: str, port: int, config: ServerConfig, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start uvicorn serving `app` on loopback and wait until `/healthz` answers."""
    command = [
        sys.executable, "-m", "uvicorn", app,
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(config.workers), "--http", config.http, "--loop", config.loop,
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{app} exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{app} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the load generator ------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What one drive measured: per-request latency (s), status counts, wall time (s), and
    how many attempts had all their callbacks sent."""

    latencies: list[float]
    statuses: dict[int, int]
    elapsed_s: float
    attempts_done: int

    @property
    def accepted(self) -> int:
        return self.statuses.get(204, 0)

    def rate(self) -> float:
        return self.accepted / self.elapsed_s

    def percentile_ms(self, q: int) -> float:
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[q - 1] * 1000


async def _drive(
    port: int, requests: list[list[bytes]], concurrency: int, duration_s: float
) -> Run:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    pending = iter(requests)
    done = 0
    deadline = time.monotonic() + duration_s

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for callbacks in pending:
                if time.monotonic() > deadline:
                    return
                for request in callbacks:
                    started = time.perf_counter()
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.lower() == b"content-length":
                            length = int(value)
                    if length:
                        await reader.readexactly(length)
                    latencies.append(time.perf_counter() - started)
                    statuses[int(head[9:12])] += 1
                done += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return Run(latencies, dict(statuses), time.perf_counter() - started, done)


def _drive_in_child(
    port: int,
    requests: list[list[bytes]],
    concurrency: int,
    duration_s: float,
    out: multiprocessing.Queue[Run],
) -> None:
    out.put(asyncio.run(_drive(port, requests, concurrency, duration_s)))


def drive(port: int, requests: list[list[bytes]], concurrency: int, duration_s: float) -> Run:
    """Drive `requests` at the server from a separate process (its own interpreter and core
    share, so the generator does not share an event loop or GIL with the caller)."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[Run] = context.Queue()
    child = context.Process(
        target=_drive_in_child, args=(port, requests, concurrency, duration_s, queue)
    )
    child.start()
    run = queue.get()
    child.join()
    return run


# --- the run -----------------------------------------------------------------------------


def check(
    database_url: str, client: redis.Redis, attempts: Sequence[tuple[int, str]], counting: bool
) -> list[str]:
    """Problems found after the run: attempts not completed, events not stored exactly
    once, jobs not done, leases left in the pool, and (`counting`) campaign counters that
    differ from a recount from scratch."""
    ids = [attempt_id for attempt_id, _ in attempts]
    problems: list[str] = []
    with transaction(database_url) as session:
        not_completed = session.scalar(
            select(func.count())
            .select_from(CallAttempt)
            .where(CallAttempt.id.in_(ids), CallAttempt.status != AttemptStatus.COMPLETED)
        )
        if not_completed:
            problems.append(f"{not_completed} attempts not completed")
        per_attempt = dict(
            session.execute(
                select(ProviderEvent.attempt_id, func.count())
                .where(ProviderEvent.attempt_id.in_(ids))
                .group_by(ProviderEvent.attempt_id)
            ).all()
        )
        wrong = [i for i in ids if per_attempt.get(i, 0) != len(EVENTS)]
        if wrong:
            problems.append(f"{len(wrong)} attempts without exactly {len(EVENTS)} events stored")
        not_done = session.scalar(
            select(func.count())
            .select_from(CallJob)
            .join(CallAttempt, CallAttempt.job_id == CallJob.id)
            .where(CallAttempt.id.in_(ids), CallJob.status != JobStatus.DONE)
        )
        if not_done:
            problems.append(f"{not_done} jobs not done")
        account_id = session.scalar(select(Account.id))
        if counting:
            campaign_id = session.scalar(select(Campaign.id))
            kept, _ = counters.read(session, campaign_id or 0, datetime.now(UTC))
            if kept != counters.recount(session, campaign_id or 0)[0]:
                problems.append("campaign counters differ from a recount")
    live = client.zrange(Keys(account_id or 0).account_pool(), 0, -1)
    held = set(live) & {str(i).encode() for i in ids}
    if held:
        problems.append(f"{len(held)} leases still held")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--attempts", type=int, default=3000, help="calls driven (4 callbacks each)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="callbacks in flight at most")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per drive at most")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"))
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--server", default="postgresql+psycopg://root@127.0.0.1:5432")
    parser.add_argument("--redis", default=f"redis://127.0.0.1:6379/{REDIS_DB}")
    parser.add_argument("--database", default=DATABASE, help="scratch database (dropped first)")
    parser.add_argument(
        "--without-counting",
        action="store_true",
        help="turn the campaign counters' triggers off (the cost of keeping them: bench/report.py)",
    )
    args = parser.parse_args(argv)

    config = ServerConfig(args.workers, args.http, args.loop)
    database_url = scratch_database(args.server, args.database)
    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    seeded = seed(database_url, Pool(client), WARMUP_ATTEMPTS + args.attempts)
    if args.without_counting:
        set_counting(database_url, False)
    engine_for(database_url).dispose()
    warmup, measured = seeded[:WARMUP_ATTEMPTS], seeded[WARMUP_ATTEMPTS:]
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "TWILIO_AUTH_TOKEN": SIMULATOR_AUTH_TOKEN,
    }
    print(
        f"{args.attempts} calls x {len(EVENTS)} callbacks, concurrency {args.concurrency}, "
        f"uvicorn workers={config.workers} http={config.http} loop={config.loop}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )

    runs: dict[str, Run] = {}
    cpu: dict[str, tuple[float, float]] = {}
    callbacks = 0  # the webhook's, warm-up included: what the counting time is spread over
    for name, app in (("bare", "bench.callbacks:bare_app"), ("webhook", "dialer.web.asgi:app")):
        port = free_port()
        if name == "webhook":
            track_counting(database_url)
        server = serve(app, port, config, env)
        try:
            warm = drive(port, build_requests(warmup, port), args.concurrency, args.duration)
            servers = process_tree(server.pid)
            started = {pid: cpu_seconds([pid]) for pid in backends(database_url)}
            api_started = cpu_seconds(servers)
            runs[name] = drive(
                port, build_requests(measured, port), args.concurrency, args.duration
            )
            # A backend the server's pool opened during the drive counts from 0.
            database_s = sum(
                cpu_seconds([pid]) - started.get(pid, 0.0) for pid in backends(database_url)
            )
            cpu[name] = (cpu_seconds(servers) - api_started, database_s)
            callbacks = warm.accepted + runs[name].accepted
        finally:
            stop(server)
    counting_s, counting_runs = counting_time(database_url)

    print(
        f"\n{'endpoint':<10}{'requests':>10}{'rate/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'api ms':>9}{'pg ms':>9}  other statuses"
    )
    for name, run in runs.items():
        others = {s: n for s, n in run.statuses.items() if s != 204} or ""
        api_s, pg_s = cpu[name]
        print(
            f"{name:<10}{run.accepted:>10}{run.rate():>10.0f}"
            f"{run.percentile_ms(50):>9.1f}{run.percentile_ms(99):>9.1f}"
            f"{1000 * api_s / run.accepted:>9.3f}{1000 * pg_s / run.accepted:>9.3f}  {others}"
        )
    bare, hook = runs["bare"], runs["webhook"]
    print(
        f"{'ratio':<10}{'':>10}{hook.rate() / bare.rate():>10.2f}"
        f"{hook.percentile_ms(50) / bare.percentile_ms(50):>9.1f}"
        f"{hook.percentile_ms(99) / bare.percentile_ms(99):>9.1f}  (webhook / bare)"
    )
    print(
        "targets: webhook >= 1500/s, p99 <= 50 ms; api ms and pg ms: CPU milliseconds per"
        " callback of the server's processes and of its PostgreSQL backends"
    )
    if counting_runs:
        share = (counting_s / callbacks) / (sum(cpu["webhook"]) / hook.accepted)
        print(
            f"counting triggers: {1000 * counting_s / callbacks:.3f} ms of PostgreSQL time per"
            f" callback, {share:.1%} of the webhook's CPU per callback (api + pg)"
            f" ({counting_runs} runs, {1000 * counting_s / counting_runs:.3f} ms each,"
            f" {callbacks / counting_runs:.1f} callbacks per run; pg_stat_user_functions)"
        )

    driven = warmup + measured[: hook.attempts_done]
    problems = check(database_url, client, driven, not args.without_counting)
    if hook.attempts_done < len(measured):
        problems.append(f"only {hook.attempts_done} of {len(measured)} calls driven in time")
    print(f"\ncorrectness ({len(driven)} calls): " + ("; ".join(problems) or "ok"))
    client.close()
    engine_for(database_url).dispose()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
