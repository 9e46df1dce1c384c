"""Every tutorial runs (issue 23, "examples that run"): a tutorial that stops working fails.

Each page of `docs/tutorials/` is run from top to bottom against a real stack (the
simulator and the API from `tests.e2e.conftest.running_stack`, a real Celery worker and
beat), its fenced blocks read with these conventions:

- ```` ```sh ```` blocks are run in order, all of a page's in one bash session
  (`set -euo pipefail`; a variable one block sets is there for the next), in an empty
  working directory; `dialer` and `python` are this checkout's (`sys.executable`).
- ```` ```python title="NAME" ```` blocks are files: written to NAME before the page runs
  (a later `sh` block runs or imports them).
- `<!-- not run: why -->` on the line before a block shows it without running it (starting
  the parts: the test starts its own).
- Any other block (```` ```text ````, ```` ```json ````, a `python` block without a title)
  is output or an excerpt: shown, not run.
- The addresses and values a reader's machine has (`SUBSTITUTIONS`) are replaced by the
  test's: the stack's URLs, free ports, and a time zone and a number where it is now
  daytime, so the calls are inside their calling window at any hour.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dialer.cli.devstack import free_port
from dialer.windows import daytime_zone
from models import utcnow
from tests.e2e.conftest import Stack, running_stack
from tests.support import daytime_number

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
PAGE_TIMEOUT_S = 240.0
"""A page's commands in all: a few contacts at the simulator's fast time scale."""
TIME_SCALE = 0.005
"""The simulator's time scale (`running_stack`), given to the workers as `DEV_TIME_SCALE`."""

FENCE = re.compile(
    r"^(?:<!-- (?P<mark>[^\n]*?) -->\n)?```(?P<lang>\w*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, `title` attribute, mark and text."""

    line: int
    lang: str
    title: str | None
    mark: str | None
    body: str

    @property
    def runs(self) -> bool:
        return self.lang == "sh" and not (self.mark or "").startswith("not run")

    @property
    def is_file(self) -> bool:
        return self.lang == "python" and self.title is not None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of `page`, in order."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        title = re.search(r'title="([^"]+)"', match["attrs"])
        found.append(
            Block(
                line=text.count("\n", 0, match.start("lang")) + 1,
                lang=match["lang"],
                title=title.group(1) if title else None,
                mark=match["mark"],
                body=match["body"],
            )
        )
    return found


def substitutions(stack: Stack) -> dict[str, str]:
    """What a reader's machine has -> what the test's has."""
    receiver = free_port()
    return {
        "http://127.0.0.1:8000": stack.api_url,
        "http://127.0.0.1:8765": stack.sim_url,
        "127.0.0.1:8080": f"127.0.0.1:{receiver}",
        '("127.0.0.1", 8080)': f'("127.0.0.1", {receiver})',
        "America/New_York": daytime_zone(utcnow()),
        "+12125550143": daytime_number(),
    }


def substitute(text: str, table: dict[str, str]) -> str:
    for mine, theirs in table.items():
        text = text.replace(mine, theirs)
    return text


def script(page: Path, table: dict[str, str]) -> str:
    """The page's `sh` blocks as one bash script, each announced on stderr by its line."""
    parts = ["set -euo pipefail"]
    for block in blocks(page):
        if block.runs:
            parts.append(f"echo '>>> {page.name}:{block.line}' >&2")
            parts.append(substitute(block.body, table))
    return "\n".join(parts) + "\n"


@pytest.fixture
def tutorial_stack(tmp_path: Path, committed_db: str, redis_client: Any) -> Iterator[Stack]:
    (tmp_path / "stack").mkdir()
    api_settings = {"dev_time_scale": TIME_SCALE, "webhook_allow_private_networks": True}
    with running_stack(tmp_path / "stack", api_settings) as stack:
        stack.env.update(
            DEV_TIME_SCALE=str(TIME_SCALE),  # retries on the simulator's time scale
            WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",  # the tutorials' receiver is on loopback
        )
        stack.start_worker(concurrency=4)
        stack.start_beat()
        yield stack


def _shims(bin_dir: Path) -> None:
    """`dialer` and `python` on PATH: this checkout, this interpreter."""
    bin_dir.mkdir()
    for name, command in (("dialer", "-m dialer"), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} {command} "$@"\n')
        shim.chmod(0o755)


@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_every_command_of_the_tutorial_works(
    page: Path, tutorial_stack: Stack, tmp_path: Path
) -> None:
    table = substitutions(tutorial_stack)
    work = tmp_path / "work"
    work.mkdir()
    _shims(tmp_path / "bin")
    page_blocks = blocks(page)
    assert any(b.runs for b in page_blocks), f"{page.name} has no block to run"
    for block in page_blocks:
        if block.is_file:
            assert block.title
            (work / block.title).write_text(substitute(block.body, table))
    env = {
        **tutorial_stack.env,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    (work / "tutorial.sh").write_text(script(page, table))
    log = tmp_path / "tutorial.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # bash on the page's own commands
            ["bash", "tutorial.sh"],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its background jobs (a webhook receiver) stop with it
        )
        try:
            returncode = proc.wait(PAGE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
    output = log.read_text(errors="replace")
    assert returncode == 0, f"{page.name} stopped working (after the last >>> line):\n{output}"


def test_the_harness_stops_at_a_failing_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not run: the test starts its own -->\n```sh\nexit 3\n```\n\n"
        '```python title="x.py"\nprint(1)\n```\n\n'
        "```sh\necho one\nfalse\necho never\n```\n\n```text\none\n```\n"
    )
    found = blocks(page)
    assert [(b.lang, b.runs, b.is_file) for b in found] == [
        ("sh", False, False),
        ("python", False, True),
        ("sh", True, False),
        ("text", False, False),
    ]
    done = subprocess.run(
        ["bash", "-c", script(page, {})],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "one" in done.stdout and "never" not in done.stdout
    assert f">>> page.md:{found[2].line}" in done.stderr
