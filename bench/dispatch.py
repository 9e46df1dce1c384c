"""Dispatch benchmark: how well the pacer keeps the pool full, and how fast a freed slot is
dialled again, with every real part running (simulator, API, Celery worker and beat).

Scenarios (contacts all answer, so no retries muddy the figures):
  pool-bound  cap 200, CPS 100, calls of about 3 s (200 / 3 s < 100 calls/s)
  as-asked    cap 200, CPS 100, calls of about 1 s (the limit that binds is CPS)
  cps-bound   cap 1000, CPS 50, calls of about 1 s

Printed per scenario: time-weighted utilisation while work remains (live calls at the
carrier / the binding limit's concurrency, and leases / cap), the simulator's
`max_concurrent` against the cap and `max_cps` against the limit, achieved CPS,
slot refill latency (terminal callback dispatched -> next create, while the pool was full)
p50 / p99, the Redis commands and Celery tasks per call, and the dialer's CPU per call.

Redis commands are counted twice: server-wide (`INFO stats` total_commands_processed, which
includes the commands Lua scripts run, as every other process on the server does), and for
the benchmark's database alone by `MONITOR` (lines tagged with db 12; a script's own commands
carry its db too), with the top commands per call. Both leave out the benchmark's own
sampling (one `ZCARD` per sample).

Dialer CPU: utime + stime from `/proc` of the Celery workers and beat and the API (each
process tree, as alive at each reading), and of the PostgreSQL backends connected to the
benchmark's database, from the campaign's start to its last contact done. The backends are
listed and read every 50 ms (`BackendCpu`), so one that exits mid-run counts up to its last
reading and one that starts mid-run counts whole; how many exited is printed, and so is
the postmaster's count of its exited children's CPU (`cutime` + `cstime`), which is
server-wide (other databases' backends too) and so an upper bound. The simulator, this
process and its own connections (`application_name` `dispatch-bench`) are left out.

The reference (`bench.bare`): before each scenario's runs of the dialer, the bare pipeline
(a rate-limited Celery task and a FastAPI status webhook, no pool, pacer or state machine)
calls the same number of contacts with the same simulator settings and the scenario's CPS
limit, measured the same way; the dialer's CPU per placed call is printed beside it by
process (worker, API, PostgreSQL) with their ratios.

Usage: python -m bench.dispatch [--scale F[,F...]] [--only NAME] [--workers N[,N...]]
                                [--rounds R] [--no-bare]
           (F multiplies contact counts; several run each scenario at each, e.g. 1,2,4;
            N Celery worker processes of 8 pool processes each, e.g. 1,2,4; R rounds of
            bare and dialer runs, alternating, with the median ratio printed)
       python -m bench.dispatch --scenario windows [--sizes 100000,1000000]
           (pacer rounds over a million contacts in 20 zones: see bench/dispatch_windows.py)
"""

from __future__ import annotations

import argparse
import bisect
import io
import itertools
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from celery import Celery
from sqlalchemy import Engine, create_engine, func, insert, select, text

from bench import TICKS_PER_S, cpu_seconds, process_tree, scratch_database
from bench.bare import FINAL_STATUSES, calls, metadata
from campaigns import lifecycle
from campaigns.accounts import SIMULATOR_CALLER_ID, create_account
from dialer.cli.demo import fictional_area_codes, generated_contacts
from dialer.cli.devstack import child, free_port, local_stack, wait_http
from dialer.pool import Keys
from dialer.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN, Settings
from models import transaction
from models.asyncdb import libpq_url

SERVER = "postgresql+psycopg://root@127.0.0.1:5432"
DATABASE = "dialer_bench_dispatch"
BARE_DATABASE = "dialer_bench_bare"
BENCH_APP = "dispatch-bench"
"""`application_name` of this process's own connections, left out of the CPU figures."""
REDIS_DB = 12
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


@dataclass(frozen=True)
class Scenario:
    name: str
    cap: int
    cps: float
    talk_s: float
    contacts: int


SCENARIOS = [
    Scenario("pool-bound", cap=200, cps=100.0, talk_s=2.4, contacts=3000),
    Scenario("as-asked", cap=200, cps=100.0, talk_s=0.4, contacts=3000),
    Scenario("cps-bound", cap=1000, cps=50.0, talk_s=0.4, contacts=2000),
]


class Sampler(threading.Thread):
    """Samples live calls at the carrier and leases in the pool every 20 ms."""

    def __init__(self, sim_url: str, client: redis.Redis, pool_key: str) -> None:
        super().__init__(daemon=True)
        self.sim = httpx.Client(base_url=sim_url, timeout=5)
        self.redis = client
        self.pool_key = pool_key
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            live = self.sim.get("/_sim/stats").json()["live"]
            leases = int(self.redis.zcard(self.pool_key))
            self.samples.append((time.monotonic(), live, leases))
            time.sleep(0.02)


class Monitor(threading.Thread):
    """Counts the commands Redis runs in the benchmark's database, by name (`MONITOR`)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.counts: Counter[str] = Counter()
        self.counting = False
        self.stop = threading.Event()

    def run(self) -> None:
        with self.client.monitor() as monitor:
            for command in monitor.listen():
                if self.stop.is_set():
                    return
                if self.counting and command["db"] == REDIS_DB:
                    self.counts[command["command"].split(" ", 1)[0].strip('"').upper()] += 1


def bench_engine(url: str) -> Engine:
    """An engine for this process's own queries, named so `BackendCpu` leaves them out."""
    return create_engine(url, connect_args={"application_name": BENCH_APP}, pool_size=1)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


class BackendCpu(threading.Thread):
    """CPU seconds of the PostgreSQL backends of one database (not this process's own),
    read from `/proc` every 50 ms between `begin` and `end`: a backend alive at `begin`
    counts from its reading then, one that starts later counts whole, one that exits counts
    up to its last reading (at most 50 ms of it is missed)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = bench_engine(url)
        self.baseline: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.postmaster = 0
        self.postmaster_children_s = 0.0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def _read(self, baseline_now: bool) -> None:
        with self.engine.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND application_name <> :me"
                ),
                {"me": BENCH_APP},
            ).scalars()
            pids = list(pids)
        with self.lock:
            for pid in pids:
                fields = _stat_fields(pid)
                if fields is None:
                    continue
                seconds = (int(fields[11]) + int(fields[12])) / TICKS_PER_S
                if pid not in self.baseline:
                    self.baseline[pid] = seconds if baseline_now else 0.0
                    self.postmaster = self.postmaster or int(fields[1])
                self.last[pid] = seconds

    def _postmaster_children_s(self) -> float:
        fields = _stat_fields(self.postmaster) if self.postmaster else None
        return (int(fields[13]) + int(fields[14])) / TICKS_PER_S if fields else 0.0

    def begin(self) -> None:
        self._read(baseline_now=True)
        self.postmaster_children_s = -self._postmaster_children_s()
        self.start()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self._read(baseline_now=False)

    def end(self) -> tuple[float, int, float]:
        """(CPU seconds of the database's backends, backends that exited, CPU seconds of
        all the server's backends that exited, by the postmaster's count)."""
        self.stop.set()
        self.join()
        self._read(baseline_now=False)
        exited = sum(1 for pid in self.last if _stat_fields(pid) is None)
        self.postmaster_children_s += self._postmaster_children_s()
        self.engine.dispose()
        seconds = sum(self.last[pid] - self.baseline[pid] for pid in self.last)
        return seconds, exited, self.postmaster_children_s


def tree_cpu_s(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process tree in `roots` (the processes alive now)."""
    return {name: cpu_seconds(process_tree(pid)) for name, pid in roots.items()}


def configure_simulator(sim_url: str, scenario: Scenario) -> None:
    """The scenario's carrier: every call answered by a person after a short ring."""
    httpx.post(
        f"{sim_url}/_sim/config",
        json={
            "outcome_weights": {"human": 1},
            "setup_s": 0.05,
            "ring": {"median_s": 0.3, "sigma": 0.2, "minimum_s": 0.1, "maximum_s": 1.0},
            "talk": {
                "median_s": scenario.talk_s,
                "sigma": 0.2,
                "minimum_s": 0.1,
                "maximum_s": scenario.talk_s * 3,
            },
        },
        timeout=5,
    ).raise_for_status()


def time_weighted(samples: list[tuple[float, int, int]], start: float, end: float, i: int) -> float:
    total = weight = 0.0
    for (t0, *v0), (t1, *_) in itertools.pairwise(samples):
        lo, hi = max(t0, start), min(t1, end)
        if hi > lo:
            total += v0[i - 1] * (hi - lo)
            weight += hi - lo
    return total / weight if weight else 0.0


def refill_latencies(
    timeline: dict[str, Any], samples: list[tuple[float, int, int]], cap: int
) -> list[float]:
    """For each terminal callback sent while the pool was full (every slot leased: the
    freed slot was the only way to dial), seconds until the carrier got the next create.

    The simulator's and the sampler's clocks are both CLOCK_MONOTONIC of this machine.
    """
    creates = timeline["creates"]
    times = [t for t, _, _ in samples]
    out = []
    for end in timeline["terminal_callbacks"]:
        k = bisect.bisect_right(times, end) - 1
        if k < 0 or samples[k][2] < cap:
            continue
        i = bisect.bisect_left(creates, end)
        if i < len(creates):
            out.append(creates[i] - end)
    return out


def run(scenario: Scenario, url: str, run_dir: Path, workers: int = 1) -> dict[str, Any]:
    settings = Settings(database_url=url, redis_url=REDIS_URL, data_dir=run_dir)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    with local_stack(
        settings, run_dir / scenario.name, time_scale=1.0, worker_concurrency=8, workers=workers
    ) as stack:
        configure_simulator(stack.sim_url, scenario)
        with transaction(url) as session:
            account = create_account(
                session,
                f"bench-{scenario.name}-{time.time_ns()}",
                max_concurrency=scenario.cap,
                cps=scenario.cps,
                simulator=True,
            )
            account_id = account.id
        imported = lifecycle.import_campaign(
            url,
            run_dir,
            account_id,
            lifecycle.CampaignOptions(
                name=scenario.name,
                message="Hello {first_name}.",
                max_concurrency=scenario.cap,
                max_attempts=1,
            ),
            io.BytesIO(generated_contacts(scenario.contacts)),
        )
        roots = {name: proc.pid for name, proc in stack.processes.items() if name != "simulator"}
        monitor = Monitor(REDIS_URL)
        monitor.start()
        time.sleep(0.2)  # MONITOR is on before counting starts
        commands_before = client.info("stats")["total_commands_processed"]
        stats_before = client.info("commandstats")
        cpu_before = tree_cpu_s(roots)
        postgres = BackendCpu(url)
        postgres.begin()
        monitor.counting = True
        sampler = Sampler(stack.sim_url, client, Keys(account_id).account_pool())
        sampler.start()
        with transaction(url) as session:
            lifecycle.start(session, account_id, imported.campaign_id, actor="bench")
        stack.kick_pacer(account_id)
        progress = bench_engine(url)
        while True:
            with progress.connect() as conn:
                left = conn.execute(
                    text(
                        "SELECT count(*) FROM call_jobs WHERE campaign_id = :c AND status <> 'done'"
                    ),
                    {"c": imported.campaign_id},
                ).scalar_one()
            if left == 0:
                break
            time.sleep(0.25)
        progress.dispose()
        monitor.counting = False
        cpu_after = tree_cpu_s(roots)
        cpu_after["postgres"], exited, postmaster_s = postgres.end()
        sampler.stop.set()
        sampler.join()
        monitor.stop.set()
        commands = client.info("stats")["total_commands_processed"] - commands_before
        stats_after = client.info("commandstats")
        stats = httpx.get(f"{stack.sim_url}/_sim/stats", timeout=5).json()
        timeline = httpx.get(f"{stack.sim_url}/_sim/timeline", timeout=30).json()
        tasks = stack.celery.control.inspect(timeout=2).stats() or {}
    client.close()
    creates = timeline["creates"]
    start, last_create = creates[0], creates[-1]
    concurrency_limit = min(scenario.cap, scenario.cps * (scenario.talk_s + 0.4))
    live_mean = time_weighted(sampler.samples, start, last_create, 1)
    lease_mean = time_weighted(sampler.samples, start, last_create, 2)
    steady = creates[len(creates) // 10 : len(creates) * 9 // 10]
    achieved = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    refill = sorted(refill_latencies(timeline, sampler.samples, scenario.cap))
    task_count = sum(sum(worker.get("total", {}).values()) for worker in tasks.values())
    calls = stats["calls_created"]
    own = len(sampler.samples)  # the sampler's ZCARDs
    commands -= own
    monitor.counts["ZCARD"] -= own
    server_wide = Counter(
        {
            name.removeprefix("cmdstat_").upper(): value["calls"]
            - stats_before.get(name, {}).get("calls", 0)
            for name, value in stats_after.items()
        }
    )
    server_wide["ZCARD"] -= own
    cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    print(f"{scenario.name} ({calls} calls, {workers} worker(s)): Redis commands per call, top")
    db_total = sum(monitor.counts.values())
    for name, count in monitor.counts.most_common(16):
        print(
            f"  {name:<18} db{REDIS_DB} {count / calls:6.2f}  "
            f"server {server_wide[name] / calls:6.2f}"
        )
    print(f"  {'total':<18} db{REDIS_DB} {db_total / calls:6.2f}  server {commands / calls:6.2f}")
    print(
        f"{scenario.name}: dialer CPU ms per call "
        + " ".join(f"{name}={seconds * 1000 / calls:.2f}" for name, seconds in cpu.items())
        + f" total={sum(cpu.values()) * 1000 / calls:.2f}"
        + f"; backends exited mid-run {exited}; the server's exited backends (all databases)"
        + f" {postmaster_s * 1000 / calls:.2f}"
    )
    return {
        "scenario": scenario.name,
        "workers": workers,
        "cap": scenario.cap,
        "cps_limit": scenario.cps,
        "calls": calls,
        "live/binding": live_mean / concurrency_limit,
        "leases/cap": lease_mean / scenario.cap,
        "max_concurrent": stats["max_concurrent"],
        "max_cps": stats["max_cps"],
        "achieved_cps": achieved,
        "refill_p50_ms": statistics.median(refill) * 1000 if refill else None,
        "refill_p99_ms": refill[int(len(refill) * 0.99) - 1] * 1000 if len(refill) > 1 else None,
        "refills": len(refill),
        "redis_cmds_per_call": commands / calls if calls else None,
        "redis_db_cmds_per_call": db_total / calls if calls else None,
        "cpu_ms_per_call": sum(cpu.values()) * 1000 / calls if calls else None,
        "cpu_ms": by_process(cpu, calls),
        "celery_tasks_per_call": task_count / calls if calls else None,
    }


def by_process(cpu: dict[str, float], calls: int) -> dict[str, float]:
    """CPU milliseconds per call by process kind: `worker` (the Celery workers and beat),
    `api`, `postgres`, and `total`."""
    out = {"worker": 0.0, "api": 0.0, "postgres": 0.0}
    for name, seconds in cpu.items():
        kind = "worker" if name.startswith(("worker", "beat")) else name
        out[kind] += seconds * 1000 / max(calls, 1)
    out["total"] = sum(out.values())
    return out


def plain_database(server: str, database: str) -> str:
    """Drop and create `database` on `server` with the bare pipeline's table; its URL."""
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    url = f"{server}/{database}"
    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    return url


def run_bare(scenario: Scenario, url: str, run_dir: Path) -> dict[str, Any]:
    """The bare pipeline (`bench.bare`) calls `scenario.contacts` contacts at the scenario's
    CPS limit on the same simulator settings: its CPU per placed call by process (the same
    accounting as `run`), Redis commands per call, achieved CPS and the most creates in one
    second."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    engine = bench_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE bare_calls RESTART IDENTITY"))
        areas = fictional_area_codes()
        conn.execute(
            insert(calls),
            [
                {"phone": f"+1{areas[i // 100]}55501{i % 100:02d}", "first_name": "Ada"}
                for i in range(scenario.contacts)
            ],
        )
        ids = list(conn.execute(select(calls.c.id).order_by(calls.c.id)).scalars())
    directory = run_dir / f"bare-{scenario.name}"
    directory.mkdir(parents=True, exist_ok=True)
    sim_port, api_port = free_port(), free_port()
    sim_url, api_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "BARE_DATABASE_URL": url,
        "BARE_LIBPQ_URL": libpq_url(url),
        "BARE_REDIS_URL": REDIS_URL,
        "BARE_ACCOUNT_SID": SIMULATOR_ACCOUNT_SID,
        "BARE_AUTH_TOKEN": SIMULATOR_AUTH_TOKEN,
        "BARE_TWILIO_BASE_URL": sim_url,
        "BARE_PUBLIC_BASE_URL": api_url,
        "BARE_CALLER_ID": SIMULATOR_CALLER_ID,
        "BARE_CPS": f"{scenario.cps:g}",
    }
    py = sys.executable
    with ExitStack() as stack:
        sim = stack.enter_context(
            child(
                [py, "-m", "dialer", "simulator", "--port", str(sim_port),
                 "--time-scale", "1.0", "--seed", "7"],
                env,
                directory / "simulator.log",
            )
        )  # fmt: skip
        api = stack.enter_context(
            child(
                [py, "-m", "uvicorn", "bench.bare.web:app", "--port", str(api_port),
                 "--workers", "1", "--log-level", "warning", "--no-access-log"],
                env,
                directory / "api.log",
            )
        )  # fmt: skip
        worker = stack.enter_context(
            child(
                [py, "-m", "celery", "-A", "bench.bare.worker", "worker", "--loglevel",
                 "WARNING", "-c", "8", "-n", f"bare-{api_port}@%h", "--without-gossip",
                 "--without-mingle"],
                env,
                directory / "worker.log",
                parent_death_signal=signal.SIGQUIT,
            )
        )  # fmt: skip
        wait_http(f"{sim_url}/_sim/stats", sim, "carrier simulator")
        wait_http(f"{api_url}/healthz", api, "bare API")
        httpx.post(f"{sim_url}/_sim/reset", timeout=5.0).raise_for_status()
        configure_simulator(sim_url, scenario)
        celery = Celery(broker=REDIS_URL)
        time.sleep(2.0)  # the worker's pool is up and consuming
        roots = {"worker": worker.pid, "api": api.pid}
        monitor = Monitor(REDIS_URL)
        monitor.start()
        time.sleep(0.2)
        commands_before = client.info("stats")["total_commands_processed"]
        cpu_before = tree_cpu_s(roots)
        postgres = BackendCpu(url)
        postgres.begin()
        monitor.counting = True
        for call_id in ids:
            celery.send_task("bare.dial", args=[call_id])
        while True:
            with engine.connect() as conn:
                final = conn.execute(
                    select(func.count()).where(calls.c.status.in_(FINAL_STATUSES))
                ).scalar_one()
            if final == len(ids):
                break
            time.sleep(0.25)
        monitor.counting = False
        cpu_after = tree_cpu_s(roots)
        cpu_after["postgres"], exited, postmaster_s = postgres.end()
        monitor.stop.set()
        commands = client.info("stats")["total_commands_processed"] - commands_before
        stats = httpx.get(f"{sim_url}/_sim/stats", timeout=5).json()
        timeline = httpx.get(f"{sim_url}/_sim/timeline", timeout=30).json()
        celery.close()
    engine.dispose()
    client.close()
    placed = stats["calls_created"]
    creates = timeline["creates"]
    steady = creates[len(creates) // 10 : len(creates) * 9 // 10]
    achieved = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    print(
        f"bare {scenario.name} ({placed} calls): CPU ms per call "
        + " ".join(f"{name}={seconds * 1000 / placed:.2f}" for name, seconds in cpu.items())
        + f" total={sum(cpu.values()) * 1000 / placed:.2f}; backends exited mid-run {exited};"
        + f" the server's exited backends (all databases) {postmaster_s * 1000 / placed:.2f};"
        + f" Redis commands per call {commands / placed:.1f}"
        + f" (db{REDIS_DB} {sum(monitor.counts.values()) / placed:.1f});"
        + f" achieved CPS {achieved:.1f}, max {stats['max_cps']}"
    )
    return {
        "calls": placed,
        "cpu_ms": by_process(cpu, placed),
        "achieved_cps": achieved,
        "max_cps": stats["max_cps"],
        "redis_cmds_per_call": commands / placed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scale", default="1", help="multiplies contact counts; a comma list runs each"
    )
    parser.add_argument("--only", help="run one scenario by name")
    parser.add_argument(
        "--workers", default="1", help="Celery worker processes; a comma list runs each"
    )
    parser.add_argument("--rounds", type=int, default=1, help="bare and dialer runs, in turn")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare pipeline")
    parser.add_argument("--scenario", choices=["stack", "windows"], default="stack")
    parser.add_argument("--sizes", default="100000,1000000", help="windows: contact counts")
    args = parser.parse_args()
    if args.scenario == "windows":
        from bench import dispatch_windows

        dispatch_windows.run([int(size) for size in args.sizes.split(",")])
        return
    url = scratch_database(SERVER, DATABASE)
    bare_url = None if args.no_bare else plain_database(SERVER, BARE_DATABASE)
    run_dir = Path("var/bench-dispatch")
    results = []
    scales = [float(scale) for scale in args.scale.split(",")]
    worker_counts = [int(n) for n in args.workers.split(",")]
    for scenario, scale, _ in itertools.product(SCENARIOS, scales, range(args.rounds)):
        if args.only and scenario.name != args.only:
            continue
        scaled = Scenario(**{**scenario.__dict__, "contacts": int(scenario.contacts * scale)})
        bare = run_bare(scaled, bare_url, run_dir) if bare_url else None
        for workers in worker_counts:
            result = {"scale": scale, **run(scaled, url, run_dir, workers), "bare": bare}
            results.append(result)
            print(
                " ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.items()
                    if k not in ("cpu_ms", "bare")
                )
            )
    print()
    print(
        f"{'scenario':<11} {'scale':>5} {'wkrs':>4} {'util':>6} {'lease':>6} "
        f"{'maxconc':>8}/{'cap':<5} {'maxcps':>6}/{'lim':<5} {'cps':>6} {'p50ms':>6} "
        f"{'p99ms':>6} {'redis/call':>10} {'db/call':>8} {'tasks/call':>10} {'cpu ms/call':>11}"
    )
    for r in results:
        print(
            f"{r['scenario']:<11} {r['scale']:>5g} {r['workers']:>4} "
            f"{r['live/binding']:>6.1%} {r['leases/cap']:>6.1%} "
            f"{r['max_concurrent']:>8}/{r['cap']:<5} {r['max_cps']:>6}/{r['cps_limit']:<5g} "
            f"{r['achieved_cps']:>6.1f} {r['refill_p50_ms'] or float('nan'):>6.1f} "
            f"{r['refill_p99_ms'] or float('nan'):>6.1f} {r['redis_cmds_per_call']:>10.1f} "
            f"{r['redis_db_cmds_per_call']:>8.1f} {r['celery_tasks_per_call']:>10.2f} "
            f"{r['cpu_ms_per_call']:>11.2f}"
        )
    if bare_url:
        print_against_bare(results)


PROCESSES = ("worker", "api", "postgres", "total")


def print_against_bare(results: list[dict[str, Any]]) -> None:
    """The dialer's CPU per placed call beside the bare pipeline's of the same round, by
    process, with their ratio; and the median ratio over rounds."""
    print()
    print("CPU ms per placed call: dialer / bare (ratio); worker includes beat")
    print(f"{'scenario':<11} {'scale':>5} {'wkrs':>4} " + " ".join(f"{p:>22}" for p in PROCESSES))
    ratios: dict[tuple[str, float, int], list[dict[str, float]]] = {}
    for r in results:
        ours, bare = r["cpu_ms"], r["bare"]["cpu_ms"]
        ratio = {p: ours[p] / bare[p] if bare[p] else float("nan") for p in PROCESSES}
        ratios.setdefault((r["scenario"], r["scale"], r["workers"]), []).append(ratio)
        print(
            f"{r['scenario']:<11} {r['scale']:>5g} {r['workers']:>4} "
            + " ".join(f"{ours[p]:>6.2f} / {bare[p]:>5.2f} ({ratio[p]:>4.2f})" for p in PROCESSES)
        )
    if any(len(v) > 1 for v in ratios.values()):
        print("median ratio over rounds")
        for (name, scale, workers), rounds in ratios.items():
            print(
                f"{name:<11} {scale:>5g} {workers:>4} "
                + " ".join(f"{statistics.median(r[p] for r in rounds):>22.2f}" for p in PROCESSES)
            )


if __name__ == "__main__":
    main()
