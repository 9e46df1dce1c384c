"""The calling-window scenario of `bench/dispatch.py` (`--scenario windows`): a pacer round
over a campaign of up to 1,000,000 pending contacts spread evenly over 20 time zones, most
of them outside their window, against real PostgreSQL and Redis (no workers: the rounds
are called directly, with the runtime's clock set).

For each size (100,000 and 1,000,000 by default) it loads the contacts with COPY (each due
at its zone's next opening, as ingest makes them), then times pacer rounds (`dispatch_round`)
at two moments of a controllable clock:

  idle    12:29:59 UTC: no zone open, nothing due: the round finds nothing to claim
  steady  13:00:00 UTC: 3 of the 20 zones open (15% of the contacts due); the account's
          pool (cap 100) is full and 5 calls end before each round (their leases are
          released untimed, as callbacks would): the round claims, admits and dials 5
  burst   the same moment with the caps out of the way: each round claims, admits and
          dials 101 (the most a round takes), their leases taken in one Redis script run

and prints the round's median and 95th percentile in ms, the SQL statements per round,
and, from `EXPLAIN (ANALYZE, BUFFERS)` of the claim query, the rows it read, the buffers it
touched and its server time: these must not grow with the number of waiting contacts. A
`SELECT 1` through the same engine is printed as the reference of what one statement costs
on the machine at that moment.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import event, select, text

from bench import scratch_database
from dialer.dispatch.pacer import dispatch_round
from dialer.pool import Keys
from dialer.pool.leases import release_keys
from dialer.pool.reconcile import ensure_pool
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.windows import CallingWindow, Place, next_opening
from models import Account, CallerId, Campaign, CampaignStatus, engine_for, transaction

SERVER = "postgresql+psycopg://root@127.0.0.1:5432"
DATABASE = "dialer_bench_2"
REDIS_URL = "redis://127.0.0.1:6379/3"

ZONES = [
    "America/St_Johns",
    "America/Halifax",
    "America/Puerto_Rico",
    "America/New_York",
    "America/Toronto",
    "America/Detroit",
    "America/Chicago",
    "America/Mexico_City",
    "America/Winnipeg",
    "America/Denver",
    "America/Edmonton",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Vancouver",
    "America/Tijuana",
    "America/Anchorage",
    "America/Juneau",
    "Pacific/Honolulu",
    "Asia/Tokyo",
    "Asia/Seoul",
]
LOADED_AT = datetime(2027, 1, 15, 12, tzinfo=UTC)
"""When the contacts are loaded: every one of the 20 zones is closed (Tokyo 21:00, St
John's 08:30)."""
IDLE_AT = LOADED_AT + timedelta(minutes=29, seconds=59)
BUSY_AT = LOADED_AT + timedelta(hours=1)
"""St John's, Halifax and Puerto Rico are open (09:30, 09:00, 09:00)."""
ROUNDS = 40

_CLAIM = """
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT * FROM call_jobs
WHERE campaign_id = :c AND status = 'pending' AND next_due_at <= :now
ORDER BY next_due_at, id LIMIT 101 FOR UPDATE SKIP LOCKED
"""


def _rows(campaign_id: int, account_id: int, size: int) -> Iterator[tuple[Any, ...]]:
    window = CallingWindow()
    opens = {zone: next_opening(window, Place((zone,), "US"), LOADED_AT) for zone in ZONES}
    for i in range(size):
        zone = ZONES[i % len(ZONES)]
        yield (
            campaign_id,
            account_id,
            i + 2,
            f"+1555{i:07d}",
            "{}",
            "{" + zone + "}",
            "US",
            opens[zone],
            "pending",
            0,
            0,
        )


def load(url: str, size: int) -> tuple[int, int]:
    """A running campaign of `size` pending contacts over `ZONES` (COPY), analysed."""
    with engine_for(url).begin() as conn:
        conn.execute(text("TRUNCATE accounts CASCADE"))
    with transaction(url) as session:
        account = Account(name="bench-windows", max_concurrency=10**6, cps=1e6)
        session.add(account)
        session.flush()
        caller = CallerId(account_id=account.id, e164="+15005550006")
        session.add(caller)
        session.flush()
        campaign = Campaign(
            account_id=account.id,
            caller_id_id=caller.id,
            name="windows",
            message="Hello.",
            max_concurrency=10**6,
            status=CampaignStatus.RUNNING,
        )
        session.add(campaign)
        session.flush()
        ids = account.id, campaign.id
    raw = engine_for(url).raw_connection()
    try:
        driver: Any = raw.driver_connection
        columns = "campaign_id, account_id, line_no, phone_e164, variables, zones, region, "
        columns += "next_due_at, status, attempt_count, dial_error_count"
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY call_jobs ({columns}) FROM STDIN") as copy,
        ):
            for row in _rows(ids[1], ids[0], size):
                copy.write_row(row)
        driver.commit()
    finally:
        raw.close()
    with engine_for(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE call_jobs"))
    return ids


def claim_plan(url: str, campaign_id: int, now: datetime) -> tuple[int, int, float]:
    """Rows the claim query's scan read, buffers it touched (shared hit + read) and its
    execution time on the server (ms)."""
    with engine_for(url).begin() as conn:
        [[plan]] = conn.execute(text(_CLAIM), {"c": campaign_id, "now": now}).all()
        conn.rollback()
    node = plan[0]["Plan"]
    buffers = node["Shared Hit Blocks"] + node["Shared Read Blocks"]
    server_ms = float(plan[0]["Execution Time"])
    while node.get("Plans"):
        node = node["Plans"][0]
    return int(node.get("Actual Rows", 0)), int(buffers), server_ms


def free_slots(runtime: Runtime, account_id: int, n: int) -> None:
    """End `n` live leases of the account, as `n` terminal callbacks would."""
    keys = Keys(account_id)
    with transaction(runtime.settings.database_url) as session:
        campaign = session.scalars(select(Campaign).where(Campaign.account_id == account_id)).one()
        caller_id = session.get_one(CallerId, campaign.caller_id_id)
        scopes = release_keys(account_id, campaign.id, caller_id.e164)
    for member in runtime.redis.zrange(keys.account_pool(), 0, n - 1):
        runtime.pool.release(member.decode(), scopes, keys.wake())


def set_cap(url: str, account_id: int, cap: int) -> None:
    with transaction(url) as session:
        session.get_one(Account, account_id).max_concurrency = cap


def rounds(
    runtime: Runtime, account_id: int, freed: int
) -> tuple[list[float], list[float], int, float]:
    """ROUNDS pacer rounds (each after `freed` leases are released, untimed): their wall
    and CPU (this process) times in ms, the calls they dialled, and the SQL statements per
    round."""
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    engine = engine_for(runtime.settings.database_url)
    event.listen(engine, "before_cursor_execute", count)
    times, cpu, dials = [], [], 0
    for _ in range(ROUNDS):
        if freed:
            free_slots(runtime, account_id, freed)
        ensure_pool(runtime.pool, runtime.settings.database_url, account_id)  # as run_pacer
        event.listen(engine, "before_cursor_execute", count)
        started, started_cpu = time.perf_counter(), time.process_time()
        out = dispatch_round(runtime, account_id)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        event.remove(engine, "before_cursor_execute", count)
        dials += len(out.dials)
    return times, cpu, dials, statements / ROUNDS


def round_trip_ms(url: str) -> float:
    """Median `SELECT 1` through the same engine: what one statement costs on this
    machine right now (shared and loaded: a round's time is a multiple of it)."""
    times = []
    with engine_for(url).connect() as conn:
        for _ in range(200):
            started = time.perf_counter()
            conn.execute(text("SELECT 1")).scalar()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(sizes: list[int]) -> None:
    url = scratch_database(SERVER, DATABASE)
    client = redis.Redis.from_url(REDIS_URL)
    print(
        f"{'contacts':>9} {'round':>6} {'p50 ms':>7} {'p95 ms':>7} {'cpu p50':>7} "
        f"{'dials':>6} {'stmts/round':>11} {'claim rows read':>15} {'claim buffers':>13} "
        f"{'claim server ms':>15} {'SELECT 1 ms':>11}"
    )
    for size in sizes:
        client.flushdb()
        account_id, campaign_id = load(url, size)
        runtime = Runtime(Settings(database_url=url, redis_url=REDIS_URL))
        ensure_pool(runtime.pool, url, account_id)
        for label, moment, cap, freed in (
            ("idle", IDLE_AT, 100, 0),
            ("steady", BUSY_AT, 100, 5),
            ("burst", BUSY_AT, 10**6, 0),
        ):
            set_cap(url, account_id, cap)
            runtime.clock = lambda moment=moment: moment  # type: ignore[misc]
            read, buffers, server_ms = claim_plan(url, campaign_id, moment)
            times, cpu, dials, statements = rounds(runtime, account_id, freed)
            p95 = sorted(times)[int(len(times) * 0.95) - 1]
            print(
                f"{size:>9} {label:>6} {statistics.median(times):>7.2f} {p95:>7.2f} "
                f"{statistics.median(cpu):>7.2f} {dials:>6} {statements:>11.1f} {read:>15} "
                f"{buffers:>13} {server_ms:>15.3f} {round_trip_ms(url):>11.3f}",
                flush=True,
            )
    client.flushdb()
    client.close()
