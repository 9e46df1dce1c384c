"""The whole chain on this machine: the simulator, the HTTP API, real Celery processes.

The simulator and the API run in threads of the test process; Celery workers and beat are
real child processes (`celery -A workers worker`), so a test can SIGKILL one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from dialer.cli.devstack import child
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.simulator import SimulatorConfig, run_in_thread
from dialer.web.app import create_app
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.servers import serve_app
from tests.support import METRICS_TOKEN


@dataclass
class Stack:
    """A running dialer: URLs, the runtime the test process uses, and its processes."""

    sim_url: str
    api_url: str
    runtime: Runtime
    env: dict[str, str]
    log_dir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stack: ExitStack = field(default_factory=ExitStack)

    def sim(self, method: str, path: str, **kw: Any) -> Any:
        response = httpx.request(method, self.sim_url + path, timeout=10, **kw)
        response.raise_for_status()
        return response.json() if response.content else None

    def start_worker(
        self,
        concurrency: int = 4,
        name: str | None = None,
        *,
        metrics_port: int = 0,
        loglevel: str = "WARNING",
        queues: str = "dials,pacer,maintenance,webhooks",
    ) -> subprocess.Popen[bytes]:
        """A real worker (prefork) consuming `queues`, logging to `worker-<name>.log`;
        serving its metrics on `metrics_port` (0: not served)."""
        label = name or f"w{len(self.workers)}"
        proc = self.stack.enter_context(
            child(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "workers",
                    "worker",
                    "--loglevel",
                    loglevel,
                    "-c",
                    str(concurrency),
                    "-Q",
                    queues,
                    "-n",
                    f"{label}-{os.getpid()}@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                {**self.env, "WORKER_METRICS_PORT": str(metrics_port)},
                self.log_dir / f"worker-{label}.log",
            )
        )
        self.workers.append(proc)
        return proc

    def start_beat(self, name: str = "beat") -> None:
        self.stack.enter_context(
            child(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "workers",
                    "beat",
                    "--loglevel",
                    "WARNING",
                    "-s",
                    str(self.log_dir / f"{name}-schedule"),
                ],
                self.env,
                self.log_dir / f"{name}.log",
            )
        )


@contextmanager
def running_stack(
    tmp_path: Path,
    api_settings: dict[str, Any] | None = None,
    *,
    database_url: str = DATABASE_URL,
    redis_url: str = REDIS_URL,
    env: dict[str, str] | None = None,
    **sim_config: Any,
) -> Iterator[Stack]:
    """Simulator + API + (workers started by the test); `api_settings` are `Settings`
    fields of the API's own (the workers take theirs from `Stack.env`, which `env`
    extends); the test's databases unless `database_url` or `redis_url` name others."""
    config = SimulatorConfig(**{"time_scale": 0.005, "seed": 11, **sim_config})
    with ExitStack() as outer, run_in_thread(config) as sim_url:
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            twilio_base_url=sim_url,
            provider="simulator",
            twilio_timeout_s=2.0,
            data_dir=tmp_path,
            stuck_dialing_after_s=3.0,
            ambiguous_redial_after_s=8.0,
            status_poll_after_s=3.0,
            metrics_token=METRICS_TOKEN,
            **(api_settings or {}),
        )
        runtime = Runtime(settings)
        api_url = outer.enter_context(serve_app(create_app(runtime)))
        runtime.settings.public_base_url = api_url
        stack_env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "TWILIO_BASE_URL": sim_url,
            "PROVIDER": "simulator",
            "PUBLIC_BASE_URL": api_url,
            "TWILIO_TIMEOUT_S": "2",
            "DATA_DIR": str(tmp_path),
            # Recovery on the tests' time scale: lost tasks and lost callbacks are noticed
            # within seconds (beat runs the reaper every 5 s).
            "STUCK_DIALING_AFTER_S": "3",
            # The wait after an ambiguous create, on the same scale: longer than the
            # simulator's `slow_delay_s` (3 s) past the client's 2 s timeout, so a create
            # processed late still finds its contact waiting, as 60 s does for real
            # requests; at 60 s a contact refused twice by 502s outlasts the test.
            "AMBIGUOUS_REDIAL_AFTER_S": "8",
            "STATUS_POLL_AFTER_S": "3",
            **(env or {}),
        }
        stack = Stack(sim_url, api_url, runtime, stack_env, tmp_path)
        with stack.stack:
            yield stack


@pytest.fixture
def stack(tmp_path: Path, committed_db: str, redis_client: Any) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running
