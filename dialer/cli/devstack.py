"""Every part of the dialer as child processes on this machine: the carrier simulator, the
HTTP API, Celery workers and beat. Used by `dialer demo` and the benchmarks.

Each child runs in its own process group with its output in `run_dir/<name>.log`, and is
stopped (SIGTERM, then SIGKILL) when the context exits, also on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from celery import Celery

from dialer.errors import DialerError
from dialer.settings import Settings

STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def child(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child process (its own process group) and stop it, and its children, on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603  # our own executables, fixed arguments
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Wait until `url` answers 2xx. Raises `DialerError` (`startup_failed`)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DialerError("startup_failed", f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DialerError("startup_failed", f"{what} did not answer at {url}")


@dataclass
class LocalStack:
    """A running local stack: where its parts listen and the environment they share."""

    sim_url: str
    api_url: str
    env: dict[str, str]
    celery: Celery

    def kick_pacer(self, account_id: int) -> None:
        """Ask the stack's workers to run the account's pacer."""
        self.celery.send_task("dialer.pacer", args=[account_id], queue="pacer")


@contextmanager
def local_stack(
    settings: Settings,
    run_dir: Path,
    *,
    time_scale: float,
    seed: int = 7,
    faults: list[str] | None = None,
    worker_concurrency: int = 8,
    api_workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Start the simulator, the API, one Celery worker and beat; yield; stop them all.

    Raises:
        DialerError: `startup_failed` when a part does not come up.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    sim_port, api_port = free_port(), free_port()
    sim_url, api_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "PROVIDER": "simulator",
        "TWILIO_BASE_URL": sim_url,
        "PUBLIC_BASE_URL": api_url,
        "SIMULATOR_PORT": str(sim_port),
        # Poll for lost final callbacks on the simulated time scale, not every two minutes.
        "STATUS_POLL_AFTER_S": str(max(2.0, 120 * time_scale)),
        **(extra_env or {}),
    }
    py = sys.executable
    fault_args = [arg for fault in faults or [] for arg in ("--fault", fault)]
    with ExitStack() as stack:
        sim = stack.enter_context(
            child(
                [py, "-m", "dialer", "simulator", "--port", str(sim_port),
                 "--time-scale", str(time_scale), "--seed", str(seed), *fault_args],
                env,
                run_dir / "simulator.log",
            )
        )  # fmt: skip
        api = stack.enter_context(
            child(
                [py, "-m", "uvicorn", "dialer.web.asgi:app", "--port", str(api_port),
                 "--workers", str(api_workers), "--log-level", "warning", "--no-access-log"],
                env,
                run_dir / "api.log",
            )
        )  # fmt: skip
        stack.enter_context(
            child(
                [py, "-m", "celery", "-A", "workers", "worker", "--loglevel", "WARNING",
                 "-c", str(worker_concurrency), "-Q", "dials,pacer,maintenance",
                 "-n", f"local-{api_port}@%h", "--without-gossip", "--without-mingle"],
                env,
                run_dir / "worker.log",
            )
        )  # fmt: skip
        stack.enter_context(
            child(
                [py, "-m", "celery", "-A", "workers", "beat", "--loglevel", "WARNING",
                 "-s", str(run_dir / "beat-schedule")],
                env,
                run_dir / "beat.log",
            )
        )  # fmt: skip
        wait_http(f"{sim_url}/_sim/stats", sim, "carrier simulator")
        wait_http(f"{api_url}/healthz", api, "HTTP API")
        httpx.post(f"{sim_url}/_sim/reset", timeout=5.0).raise_for_status()
        celery = Celery(broker=settings.redis_url)
        try:
            yield LocalStack(sim_url, api_url, env, celery)
        finally:
            celery.close()
