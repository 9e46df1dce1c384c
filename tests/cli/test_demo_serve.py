"""`dialer demo --serve` leads to the campaign page (issue 23): it prints the page's URL and
a key of the demo's account, signing in with that key at that URL works (the demo made its
own session secret: none is set here), the stack stays up after the report, and Ctrl-C
(SIGINT) stops every child and ends the demo normally.

The demo runs as a user runs it (`python -m dialer demo --serve`), output to a pipe, on a
few generated contacts at a fast time scale.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from tests.cli.test_demo_children import STOP_S, alive, descendants, still_alive, wait_for
from tests.web.page_support import sign_in

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc for the demo's children"
)

RUN_S = 240.0
"""Migrate, start four processes and a worker pool, dial three contacts."""


def _lines(stream: TextIO) -> tuple[queue.Queue[str], threading.Thread]:
    """The lines of `stream` as they come, read by a thread (which ends at its end)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def test_the_demo_with_serve_prints_a_page_and_a_key_that_signs_in_until_ctrl_c(
    committed_db: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": committed_db, "DATA_DIR": str(tmp_path / "data")}
    env.pop("SESSION_SECRET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer", "demo", "--serve", "--contacts", "3",
         "--max-attempts", "1", "--time-scale", "0.01"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    tree = []
    lines, reader = _lines(proc.stdout)
    try:
        while not any("stay up until Ctrl-C" in line for line in seen):
            try:
                seen.append(lines.get(timeout=RUN_S))
            except queue.Empty:
                raise AssertionError("".join(seen)) from None
        out = "".join(seen)
        page = re.findall(r"^Campaign page: (http://\S+/campaigns/\d+)$", out, re.MULTILINE)
        key = re.findall(r"^Sign in with the key: (dk_\S+)$", out, re.MULTILINE)
        # Shown when the campaign starts (to watch it run), and again after the report.
        assert len(page) == len(key) == 2 and len(set(page)) == len(set(key)) == 1, out
        assert out.index("Campaign page:") < out.index("Account:") < out.rindex("Campaign page:")
        tree = descendants(proc.pid)
        assert len(tree) >= 4, tree

        url = urlsplit(page[0])
        with httpx.Client(base_url=f"{url.scheme}://{url.netloc}", timeout=10) as http:
            signed_in = sign_in(http, key[0], url.path)
            assert signed_in.status_code == 303, signed_in.text
            assert signed_in.headers["location"] == url.path
            shown = http.get(url.path)
            assert shown.status_code == 200
            assert "demo: appointment reminders" in shown.text

        proc.send_signal(signal.SIGINT)
        assert proc.wait(STOP_S) == 0
        wait_for(lambda: not any(alive(p) for p in tree), STOP_S, still_alive(tree))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
        proc.stdout.close()
        for child in tree:  # never leave a stack behind, whatever happened
            if alive(child):
                os.kill(child.pid, signal.SIGKILL)
