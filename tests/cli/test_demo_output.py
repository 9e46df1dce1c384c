"""What `dialer demo` prints can be followed up (issue 24 item 6): with `--json` its last
line is JSON with the keys the README documents; without, the report table comes once,
then the account, a report command that works, and where the logs are.

The demo runs as a user runs it (`python -m dialer demo`), output to a pipe, on a few
generated contacts at a fast time scale with one attempt each, so it finishes in seconds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import redis

README = Path(__file__).resolve().parents[2] / "README.md"
RUN_S = 240.0
"""Migrate, start four processes and a worker pool, dial three contacts, stop them."""


def _dialer(*args: str, tmp_path: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [sys.executable, "-m", "dialer", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_S,
        check=False,
    )


DEMO = ("demo", "--contacts", "3", "--max-attempts", "1", "--time-scale", "0.01")


def _documented_json_keys() -> set[str]:
    """The keys the README's `dialer demo` paragraph lists for `--json`."""
    text = " ".join(README.read_text().split())
    found = re.search(r"`--json` \(last line: `\{([^}]*)\}`", text)
    assert found, "the README's dialer demo paragraph lists the --json keys"
    return set(re.findall(r'"(\w+)"', found.group(1)))


def test_the_demo_json_is_its_last_line_with_the_documented_keys(
    committed_db: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    done = _dialer(*DEMO, "--json", tmp_path=tmp_path, database_url=committed_db)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary) == _documented_json_keys()
    assert summary["rows"] == summary["accepted"] == 3
    assert summary["calls_placed"] == 3
    assert summary["report_command"].split()[-2:] == ["--account", summary["account"]]


def test_the_demo_prints_its_table_once_and_a_report_command_that_works(
    committed_db: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    done = _dialer(*DEMO, tmp_path=tmp_path, database_url=committed_db)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert len(re.findall(r"campaign \d+ — demo: appointment reminders", out)) == 1, out
    assert "{" not in out.split("└")[-1], "no dict-like summary after the table"
    assert "of calls placed" in out
    account = re.search(r"^Account: (\S+)$", out, re.MULTILINE)
    command = re.search(r"^Report: (dialer campaigns report .+)$", out, re.MULTILINE)
    logs = re.search(r"^Logs: (\S+)", out, re.MULTILINE)
    assert account and command and logs, out
    assert (Path(logs.group(1)) / "worker.log").exists()
    # The page outlives the demo only with --serve: the last line says how to get there.
    assert "dialer demo --serve" in out.strip().splitlines()[-1]
    argv = shlex.split(command.group(1))
    assert argv[0] == "dialer"
    report = _dialer(*argv[1:], tmp_path=tmp_path, database_url=committed_db)
    assert report.returncode == 0, report.stderr
    assert "(completed)" in report.stdout
