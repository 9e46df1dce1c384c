"""`dialer.logs`: structlog's lines and the standard library's come out once each, through
the same renderer, JSON or console by `LOG_FORMAT`, with the bound context and their levels.
Run in a fresh interpreter: a process configures its logging once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import logging, structlog
from dialer.logs import configure_logging
configure_logging()
structlog.contextvars.bind_contextvars(attempt_id=7, task_id="t-1")
structlog.get_logger("dialer.probe").info("probe_done", calls=3)
logging.getLogger("celery.app.trace").info("Task %s succeeded", "dialer.place_call")
logging.getLogger("celery.app.trace").debug("not shown at INFO")
"""


def run(**env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={
            **{k: v for k, v in os.environ.items() if k != "LOG_FORMAT"},
            "LOG_LEVEL": "INFO",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == ""
    return result.stderr.splitlines()


def test_json_lines_carry_the_context_and_the_level_of_either_source() -> None:
    first, second = (json.loads(line) for line in run(LOG_FORMAT="json"))
    assert first["event"] == "probe_done" and first["calls"] == 3
    assert (first["level"], first["logger"]) == ("info", "dialer.probe")
    assert second["event"] == "Task dialer.place_call succeeded"
    assert (second["level"], second["logger"]) == ("info", "celery.app.trace")
    for line in (first, second):
        assert (line["attempt_id"], line["task_id"]) == (7, "t-1")
        assert line["timestamp"].endswith("Z")


def test_json_is_the_default_off_a_terminal_and_console_on_request() -> None:
    default = run()
    assert [json.loads(line)["event"] for line in default] == [
        "probe_done",
        "Task dialer.place_call succeeded",
    ]
    console = run(LOG_FORMAT="console")
    assert len(console) == 2
    assert "probe_done" in console[0] and "attempt_id=7" in console[0]
    assert "[info" in console[1] and "Task dialer.place_call succeeded" in console[1]
    assert not any(line.startswith("{") for line in console)
