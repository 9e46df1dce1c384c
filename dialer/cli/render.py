"""Rich renderings shared by the CLI's commands and the demo."""

from __future__ import annotations

from typing import Any

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
    table.add_row("talk seconds", str(report["talk_seconds"]))
    if report["status_reason"]:
        table.add_row("reason", report["status_reason"])
    return table
