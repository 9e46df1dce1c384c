"""The long-running services say where they listen, and a worker whose metrics port is
taken says what to do (issue 24 item 7).

`dialer simulator` and `dialer api` run as a user runs them (`python -m dialer ...`) with
`--port 0`: the line they log must carry the real port, and the URL must answer.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

STARTUP_S = 60.0
"""A fresh interpreter imports the app on a shared, busy machine."""


def _listening_line(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The first JSON log line whose event is `listening`, read from `proc`'s stderr."""
    assert proc.stderr is not None
    deadline = time.monotonic() + STARTUP_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if not ready:
            assert proc.poll() is None, "exited: " + "".join(seen)
            continue
        line = proc.stderr.readline().decode()
        if not line:
            raise AssertionError("stderr closed before a listening line: " + "".join(seen))
        seen.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "listening":
            return dict(record)
    raise AssertionError("no listening line: " + "".join(seen))


@pytest.fixture
def run_service(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "LOG_FORMAT": "json", "DATA_DIR": str(tmp_path / "data")}
        env.pop("LOG_LEVEL", None)  # the default: a service logs at INFO
        proc = subprocess.Popen(
            [sys.executable, "-m", "dialer", *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def test_the_simulator_logs_the_url_it_listens_on_with_its_real_port(run_service: Any) -> None:
    record = _listening_line(run_service("simulator", "--port", "0"))
    assert record["level"] == "info"
    assert record["service"] == "simulator"
    assert not record["url"].endswith(":0")
    assert httpx.get(f"{record['url']}/_sim/stats", timeout=10).status_code == 200


def test_the_api_logs_the_url_it_listens_on_with_its_real_port(
    run_service: Any, database_url: str
) -> None:
    record = _listening_line(run_service("api", "--port", "0"))
    assert record["level"] == "info"
    assert record["service"] == "api"
    assert not record["url"].endswith(":0")
    assert httpx.get(f"{record['url']}/healthz", timeout=30).status_code == 200


def test_a_worker_whose_metrics_port_is_taken_says_to_set_another_port_or_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dialer.settings import get_settings
    from workers import observability

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("WORKER_METRICS_PORT", str(taken.getsockname()[1]))
        get_settings.cache_clear()
        try:
            with capture_logs() as logs:
                observability._serve_metrics()
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
    [record] = [r for r in logs if r["event"] == "worker_metrics_unavailable"]
    assert "WORKER_METRICS_PORT" in record["hint"]
    assert "0" in record["hint"]
