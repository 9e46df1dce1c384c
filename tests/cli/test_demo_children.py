"""`dialer demo` takes its children with it: the simulator, the API, the Celery worker (and
its pool) and beat stop when the demo gets SIGHUP or SIGTERM, as on Ctrl-C, and die when the
demo is SIGKILLed (the kernel's parent-death signal).

The demo runs as a user runs it (`python -m dialer demo`) on a campaign long enough to be
mid-flight; its process tree is read from /proc. A process counts as gone once its pid no
longer names the same process (identified by its start time) or it is a zombie.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux"
)

STARTUP_S = 90.0
"""The demo migrates, starts four processes and a worker pool on a shared, busy machine."""
STOP_S = 30.0
"""Stopping as on Ctrl-C: SIGTERM to each child, SIGKILL after 10 s if it lingers."""


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    started: int
    """Start time in clock ticks since boot (`/proc/PID/stat` field 22): tells a reused pid
    from the process we saw."""
    cmdline: str


def _read(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return Proc(pid, int(fields[1]), int(fields[19]), raw.replace(b"\0", b" ").decode())


def descendants(root: int) -> list[Proc]:
    """Every live process below `root`."""
    procs = [p for p in (_read(int(d)) for d in os.listdir("/proc") if d.isdigit()) if p]
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [root]
    while todo:
        for proc in children.get(todo.pop(), []):
            found.append(proc)
            todo.append(proc.pid)
    return found


def alive(proc: Proc) -> bool:
    now = _read(proc.pid)
    return now is not None and now.started == proc.started


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what()}")
        time.sleep(0.1)


def still_alive(tree: list[Proc]) -> Callable[[], str]:
    return lambda: "these to end: " + "; ".join(p.cmdline[:80] for p in tree if alive(p))


ROLES = {
    "simulator": " dialer simulator ",
    "api": " uvicorn dialer.web.asgi:app ",
    "worker": " workers worker ",
    "beat": " workers beat ",
}


def _role(proc: Proc) -> str | None:
    return next((role for role, mark in ROLES.items() if mark in f" {proc.cmdline} "), None)


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    run_dir: Path
    seen: dict[int, Proc] = field(default_factory=dict)
    """Every process seen below the demo: the fixture kills what is left of them."""

    def tree(self) -> list[Proc]:
        """The demo's children and theirs, once all four children and the worker's pool are
        up (the pool processes are the worker's children)."""
        seen: list[Proc] = []

        def complete() -> bool:
            assert self.proc.poll() is None, self.logs()
            seen[:] = descendants(self.proc.pid)
            self.seen.update((p.pid, p) for p in seen)
            direct = {_role(p) for p in seen if p.ppid == self.proc.pid}
            workers = [p for p in seen if p.ppid == self.proc.pid and _role(p) == "worker"]
            pool = [p for p in seen if workers and p.ppid == workers[0].pid]
            return direct >= set(ROLES) and len(pool) >= 2

        wait_for(complete, STARTUP_S, lambda: f"the children and the pool: {seen}")
        # Mid-campaign: the simulator has seen calls, so pacers and dials are running.
        [sim] = [p for p in seen if _role(p) == "simulator"]
        port = sim.cmdline.split(" --port ")[1].split()[0]

        def calling() -> bool:
            assert self.proc.poll() is None, self.logs()
            try:
                stats = httpx.get(f"http://127.0.0.1:{port}/_sim/stats", timeout=2).json()
            except httpx.HTTPError:
                return False
            return int(stats["calls_created"]) > 0

        wait_for(calling, STARTUP_S, lambda: "the first call\n" + self.logs())
        self.seen.update((p.pid, p) for p in descendants(self.proc.pid))
        return [p for p in descendants(self.proc.pid)]

    def logs(self) -> str:
        parts = [
            f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted(self.run_dir.glob("*.log"))
        ]
        return "\n".join(parts)


@pytest.fixture
def demo(committed_db: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Demo]:
    env = dict(os.environ)
    env["DATABASE_URL"] = committed_db
    env["DATA_DIR"] = str(tmp_path / "data")
    # Real time (time scale 1): the campaign is mid-flight for minutes, far longer than the test.
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer", "demo", "--contacts", "40", "--time-scale", "1",
         "--max-concurrency", "4", "--cps", "2", "--json"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    running = Demo(proc, tmp_path / "data" / "demo")
    try:
        yield running
    finally:
        running.seen.update((p.pid, p) for p in descendants(proc.pid))
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for child in running.seen.values():  # never leave a stack behind, whatever happened
            if alive(child):
                os.kill(child.pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_hang_up_or_terminate_stops_every_child(demo: Demo, signum: int) -> None:
    tree = demo.tree()
    demo.proc.send_signal(signum)
    wait_for(lambda: not any(alive(p) for p in tree), STOP_S, still_alive(tree))
    # The demo stopped them itself (they did not outlive it) and ended by the same signal.
    assert demo.proc.wait(STOP_S) == -signum
    for name in ("simulator", "api", "worker", "beat"):
        assert (demo.run_dir / f"{name}.log").exists()


def test_children_die_with_a_killed_demo(demo: Demo) -> None:
    tree = demo.tree()
    demo.proc.send_signal(signal.SIGKILL)
    assert demo.proc.wait(STOP_S) == -signal.SIGKILL
    wait_for(lambda: not any(alive(p) for p in tree), STOP_S, still_alive(tree))


def test_the_demo_sample_lives_where_it_is_daytime() -> None:
    # `make demo` must finish at any hour: the sample's US contacts would otherwise wait
    # for 09:00 in New York.
    from dialer.cli.demo import in_daytime, sample_csv
    from dialer.windows import daytime_zone
    from models import utcnow

    original = list(csv.reader(io.StringIO(sample_csv().decode("utf-8-sig"))))
    moved = list(csv.reader(io.StringIO(in_daytime(sample_csv()).decode())))
    assert moved[0] == [*original[0], "timezone"]
    assert [row[:-1] for row in moved[1:]] == [row for row in original[1:] if row]
    assert {row[-1] for row in moved[1:]} == {daytime_zone(utcnow())}
