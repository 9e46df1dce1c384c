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

Dialer CPU: utime + stime from `/proc` of the Celery worker and beat and the API (each
process tree, as alive at each reading), and of the PostgreSQL backends connected to the
benchmark's database (those alive at each reading; a backend that exits mid-run is
missed), from the campaign's start to its last contact done. The simulator and this
process are left out.

Usage: python -m bench.dispatch [--scale F[,F...]] [--only NAME]
           (F multiplies contact counts; several run each scenario at each, e.g. 1,2,4)
       python -m bench.dispatch --scenario windows [--sizes 100000,1000000]
           (pacer rounds over a million contacts in 20 zones: see bench/dispatch_windows.py)
"""

from __future__ import annotations

import argparse
import bisect
import io
import itertools
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import text

from bench import backends, cpu_seconds, process_tree, scratch_database
from campaigns import lifecycle
from campaigns.accounts import create_account
from dialer.cli.demo import generated_contacts
from dialer.cli.devstack import local_stack
from dialer.pool import Keys
from dialer.settings import Settings
from models import transaction

SERVER = "postgresql+psycopg://root@127.0.0.1:5432"
DATABASE = "dialer_bench_dispatch"
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


def dialer_cpu_s(roots: dict[str, int], database_url: str) -> dict[str, float]:
    """CPU seconds so far per part: each process tree in `roots` (the processes alive now)
    and `postgres` (the backends connected to the database of `database_url`)."""
    out = {name: cpu_seconds(process_tree(pid)) for name, pid in roots.items()}
    out["postgres"] = cpu_seconds(backends(database_url))
    return out


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


def run(scenario: Scenario, url: str, run_dir: Path) -> dict[str, Any]:
    settings = Settings(database_url=url, redis_url=REDIS_URL, data_dir=run_dir)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    with local_stack(
        settings, run_dir / scenario.name, time_scale=1.0, worker_concurrency=8
    ) as stack:
        httpx.post(
            f"{stack.sim_url}/_sim/config",
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
        roots = {name: stack.processes[name].pid for name in ("worker", "beat", "api")}
        monitor = Monitor(REDIS_URL)
        monitor.start()
        time.sleep(0.2)  # MONITOR is on before counting starts
        commands_before = client.info("stats")["total_commands_processed"]
        stats_before = client.info("commandstats")
        cpu_before = dialer_cpu_s(roots, url)
        monitor.counting = True
        sampler = Sampler(stack.sim_url, client, Keys(account_id).account_pool())
        sampler.start()
        with transaction(url) as session:
            lifecycle.start(session, account_id, imported.campaign_id, actor="bench")
        stack.kick_pacer(account_id)
        while True:
            with transaction(url) as session:
                left = session.execute(
                    text(
                        "SELECT count(*) FROM call_jobs WHERE campaign_id = :c AND status <> 'done'"
                    ),
                    {"c": imported.campaign_id},
                ).scalar_one()
            if left == 0:
                break
            time.sleep(0.25)
        monitor.counting = False
        cpu_after = dialer_cpu_s(roots, url)
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
    print(f"{scenario.name} ({calls} calls): Redis commands per call, top")
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
    )
    return {
        "scenario": scenario.name,
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
        "celery_tasks_per_call": task_count / calls if calls else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scale", default="1", help="multiplies contact counts; a comma list runs each"
    )
    parser.add_argument("--only", help="run one scenario by name")
    parser.add_argument("--scenario", choices=["stack", "windows"], default="stack")
    parser.add_argument("--sizes", default="100000,1000000", help="windows: contact counts")
    args = parser.parse_args()
    if args.scenario == "windows":
        from bench import dispatch_windows

        dispatch_windows.run([int(size) for size in args.sizes.split(",")])
        return
    url = scratch_database(SERVER, DATABASE)
    run_dir = Path("var/bench-dispatch")
    results = []
    scales = [float(scale) for scale in args.scale.split(",")]
    for scenario, scale in itertools.product(SCENARIOS, scales):
        if args.only and scenario.name != args.only:
            continue
        scaled = Scenario(**{**scenario.__dict__, "contacts": int(scenario.contacts * scale)})
        result = {"scale": scale, **run(scaled, url, run_dir)}
        results.append(result)
        print(
            " ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
            )
        )
    print()
    print(
        f"{'scenario':<11} {'scale':>5} {'util':>6} {'lease':>6} {'maxconc':>8}/{'cap':<5} "
        f"{'maxcps':>6}/{'lim':<5} {'cps':>6} {'p50ms':>6} {'p99ms':>6} "
        f"{'redis/call':>10} {'db/call':>8} {'tasks/call':>10} {'cpu ms/call':>11}"
    )
    for r in results:
        print(
            f"{r['scenario']:<11} {r['scale']:>5g} "
            f"{r['live/binding']:>6.1%} {r['leases/cap']:>6.1%} "
            f"{r['max_concurrent']:>8}/{r['cap']:<5} {r['max_cps']:>6}/{r['cps_limit']:<5g} "
            f"{r['achieved_cps']:>6.1f} {r['refill_p50_ms'] or float('nan'):>6.1f} "
            f"{r['refill_p99_ms'] or float('nan'):>6.1f} {r['redis_cmds_per_call']:>10.1f} "
            f"{r['redis_db_cmds_per_call']:>8.1f} {r['celery_tasks_per_call']:>10.2f} "
            f"{r['cpu_ms_per_call']:>11.2f}"
        )


if __name__ == "__main__":
    main()
