"""Benchmarks: each prints figures, not pass/fail (see docs/benchmarks.md)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import create_engine, text


def scratch_database(server: str, database: str) -> str:
    """Drop and create the scratch database `database` on `server` (a SQLAlchemy URL
    without a database), migrate it; returns its URL."""
    from models.migrate import upgrade

    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()
    url = f"{server}/{database}"
    upgrade(url)
    return url


TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU seconds the processes `pids` have used so far (Linux
    `/proc/<pid>/stat`, fields 14 and 15); a process that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS_PER_S


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it now (Linux `/proc`)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def backends(url: str) -> list[int]:
    """The PostgreSQL backend processes connected now to `url`'s database (the server runs
    on this machine)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        pids = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalars()
        result = list(pids)
    engine.dispose()
    return result


COUNTING_TRIGGERS = ("count_insert", "count_update", "count_delete")
"""The triggers of `call_jobs` and `call_attempts` that keep the campaign counters current
(migration 0009, `campaigns.counters`)."""


def set_counting(url: str, enabled: bool) -> None:
    """Turn the counting triggers of both tables on or off (a scratch database only)."""
    action = "ENABLE" if enabled else "DISABLE"
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in ("call_jobs", "call_attempts"):
            for trigger in COUNTING_TRIGGERS:
                conn.execute(text(f"ALTER TABLE {table} {action} TRIGGER {trigger}"))
    engine.dispose()


def track_counting(url: str) -> None:
    """Have PostgreSQL time the counting trigger functions in `url`'s database from now on
    (`track_functions = 'pl'` for its new sessions; needs a superuser, as on a scratch
    server) and start from zero (`pg_stat_reset()`): `counting_time`."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f"ALTER DATABASE \"{database}\" SET track_functions = 'pl'"))
        conn.execute(text("SELECT pg_stat_reset()"))
    engine.dispose()


def counting_time(url: str, wait_s: float = 10.0) -> tuple[float, int]:
    """(seconds, runs) the counting trigger functions took in `url`'s database since
    `track_counting`, by PostgreSQL's own timing (`pg_stat_user_functions`), once its
    other backends have closed (a backend reports its figures as it ends), waiting up to
    `wait_s` seconds for them."""
    deadline = time.monotonic() + wait_s
    while backends(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    engine = create_engine(url)
    with engine.connect() as conn:
        total_ms, runs = conn.execute(
            text(
                "SELECT coalesce(sum(total_time), 0), coalesce(sum(calls), 0)"
                " FROM pg_stat_user_functions WHERE funcname LIKE 'dialer_count_%'"
            )
        ).one()
    engine.dispose()
    return float(total_ms) / 1000, int(runs)
