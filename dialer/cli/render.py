"""Rich renderings shared by the CLI's commands and the demo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table


def report_table(report: dict[str, Any]) -> Table:
    """A rich table of a campaign report."""
    table = Table(title=f"campaign {report['campaign_id']} — {report['name']} ({report['status']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("contacts", str(report["contacts"]))
    for group in ("jobs", "outcomes", "attempts", "answered_by", "digits"):
        for key, value in report[group].items():
            table.add_row(f"{group}: {key}", str(value))
    table.add_row("calls placed", str(report["calls_placed"]))
    if report["late_calls_hung_up"]:
        table.add_row("late calls hung up", str(report["late_calls_hung_up"]))
    if report["breaker_trips"]:
        table.add_row("circuit breaker trips", str(report["breaker_trips"]))
    table.add_row("talk seconds", str(report["talk_seconds"]))
    if report["status_reason"]:
        table.add_row("reason", report["status_reason"])
    return table


@contextmanager
def ingest_progress(
    total: int, console: Console, *, enabled: bool
) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar over the `total` bytes of a file being read, for files over
    1 MB; yields the callback that takes the bytes read so far (None: no bar)."""
    if not enabled or total < 1_000_000:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("ingesting", total=total)
        yield lambda done: progress.update(task, completed=done)


def events_table(rows: list[dict[str, Any]]) -> Table:
    """A rich table of history rows (`campaigns.history.event_json`)."""
    table = Table("at", "action", "from", "to", "actor", "reason")
    for row in rows:
        table.add_row(
            row["at"],
            row["action"],
            row["from_status"] or "",
            row["to_status"] or "",
            row["actor"],
            row["reason"] or "",
        )
    return table
