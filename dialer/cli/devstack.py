"""Every part of the dialer as child processes on this machine: the carrier simulator, the
HTTP API, Celery workers and beat. Used by `dialer demo` and the benchmarks.

Each child runs in its own process group with its output in `run_dir/<name>.log`, and is
stopped (SIGTERM, then SIGKILL) when the context exits: on Ctrl-C, and in the main thread
also on SIGHUP (the terminal closed) and SIGTERM, which `local_stack` turns into the same
unwinding (`StackStopped`, a `KeyboardInterrupt`). A child that outlives its parent all the
same (the parent was SIGKILLed) is signalled by the kernel (Linux `PR_SET_PDEATHSIG`), so no
simulator, API, worker or beat runs on orphaned: SIGTERM, except SIGQUIT for the Celery
worker, whose warm shutdown on SIGTERM would let a running pacer round go on dispatching for
its whole budget; on SIGQUIT (cold shutdown) it terminates its prefork pool at once, as
stopping its process group does. The pool processes are the worker's own children and die
with it in any case (Celery gives them a parent-death signal itself).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
from celery import Celery

from dialer.errors import DialerError
from dialer.metrics import MULTIPROC_ENV
from dialer.settings import Settings
from workers.app import create_app

STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PR_SET_PDEATHSIG = 1
"""`prctl` option: the signal the calling process gets when its parent dies (linux/prctl.h)."""


class StackStopped(KeyboardInterrupt):
    """SIGHUP or SIGTERM reached the process running a local stack: unwind as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _die_with_parent(signum: int) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get `signum` when its parent dies (Linux only;
    None elsewhere).

    The kernel sends it when the *thread* that forked the child exits, so start children
    from a thread that lives as long as the stack (the main thread, as `dialer demo` does).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no locks, no logging
        libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return preexec


@contextmanager
def child(
    args: list[str], env: dict[str, str], log: Path, *, parent_death_signal: int = signal.SIGTERM
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child process (its own process group) and stop it, and its children, on exit.

    The child also gets `parent_death_signal` if this process dies without stopping it.
    It is the root of its own process tree for metrics: this process's metrics directory
    is not passed on unless `env` names one explicitly (`dialer.metrics`).
    """
    if env.get(MULTIPROC_ENV) == os.environ.get(MULTIPROC_ENV):
        env = {key: value for key, value in env.items() if key != MULTIPROC_ENV}
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603  # our own executables, fixed arguments
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(parent_death_signal),
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


@contextmanager
def signals_stop_the_stack() -> Iterator[None]:
    """For the block, SIGHUP and SIGTERM raise `StackStopped` in the main thread, so they
    stop the children exactly as Ctrl-C does. The first one raises; later ones are ignored
    until the block has exited, so they cannot cut the stopping short. A signal the process
    ignores (SIGHUP under `nohup`) stays ignored. Elsewhere than in the main thread, nothing
    is installed (Python runs signal handlers only there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signum: signal.getsignal(signum)
        for signum in (signal.SIGHUP, signal.SIGTERM)
        if signal.getsignal(signum) is not signal.SIG_IGN
    }

    def stop(signum: int, _: FrameType | None) -> None:
        for other in previous:
            signal.signal(other, signal.SIG_IGN)
        raise StackStopped(signum)

    for signum in previous:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class LocalStack:
    """A running local stack: where its parts listen (the worker's Prometheus metrics at
    `worker_metrics_url`), the environment they share, and its child processes by name
    (`simulator`, `api`, `worker`, `beat`)."""

    sim_url: str
    api_url: str
    env: dict[str, str]
    celery: Celery
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    worker_metrics_url: str = ""

    def kick_pacer(self, account_id: int) -> None:
        """Ask the stack's workers to run the account's pacer."""
        self.celery.send_task("dialer.pacer", kwargs={"account_id": account_id}, queue="pacer")


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
    """Start the simulator, the API, one Celery worker and beat; yield; stop them all, also
    when SIGHUP or SIGTERM arrives (see `signals_stop_the_stack`).

    Raises:
        DialerError: `startup_failed` when a part does not come up.
        StackStopped: SIGHUP or SIGTERM arrived; every child has been stopped.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    sim_port, api_port, metrics_port = free_port(), free_port(), free_port()
    sim_url, api_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "PROVIDER": "simulator",
        "TWILIO_BASE_URL": sim_url,
        "PUBLIC_BASE_URL": api_url,
        "SIMULATOR_PORT": str(sim_port),
        # Retries, the ambiguous-create wait and the status poll on the simulated time scale.
        "DEV_TIME_SCALE": str(min(time_scale, 1.0)),
        "WORKER_METRICS_PORT": str(metrics_port),
        **(extra_env or {}),
    }
    if settings.celery_broker_url:
        env["CELERY_BROKER_URL"] = settings.celery_broker_url
    py = sys.executable
    fault_args = [arg for fault in faults or [] for arg in ("--fault", fault)]
    # The API's uvicorn workers share one metrics directory, fresh for this run.
    api_metrics = run_dir / "api-metrics"
    shutil.rmtree(api_metrics, ignore_errors=True)
    api_metrics.mkdir()
    with signals_stop_the_stack(), ExitStack() as stack:
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
                {**env, MULTIPROC_ENV: str(api_metrics)},
                run_dir / "api.log",
            )
        )  # fmt: skip
        worker = stack.enter_context(
            child(
                [py, "-m", "celery", "-A", "workers", "worker", "--loglevel", "WARNING",
                 "-c", str(worker_concurrency), "-Q", "dials,pacer,maintenance,webhooks",
                 "-n", f"local-{api_port}@%h", "--without-gossip", "--without-mingle"],
                env,
                run_dir / "worker.log",
                # Cold shutdown: SIGTERM's warm one lets a pacer round run on for its budget.
                parent_death_signal=signal.SIGQUIT,
            )
        )  # fmt: skip
        beat = stack.enter_context(
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
        celery = create_app(settings)
        try:
            processes = {"simulator": sim, "api": api, "worker": worker, "beat": beat}
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            yield LocalStack(sim_url, api_url, env, celery, processes, metrics_url)
        finally:
            celery.close()
