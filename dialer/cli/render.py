"""Rich renderings shared by the CLI's commands and the demo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


RATE_LABELS = {
    "answer_rate": "answer rate (of calls placed)",
    "human_rate": "human rate (of calls placed)",
    "confirmation_rate": "confirmation rate, DTMF 1 (of calls a person answered)",
    "cancellation_rate": "cancellation rate, DTMF 2 (of calls a person answered)",
}
"""Each rate's label, naming what it is over (`campaigns.reports.Rates`)."""


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def outcome_rows(outcomes: dict[str, Any]) -> list[tuple[str, int]]:
    """The report's outcomes (`campaigns.reports.Outcomes`, as JSON) as (label, count) rows,
    zero counts left out. Labels are the `models.Outcome` values the call API and the
    exports use, the detail in brackets: `machine (machine_start)`, `failed (21217)`, and
    a failure without a provider error code (`none`) as plain `failed`."""
    rows: list[tuple[str, int]] = []
    for outcome, value in outcomes.items():
        if isinstance(value, dict):
            for key, count in value.items():
                if count:
                    rows.append((outcome if key == "none" else f"{outcome} ({key})", count))
        elif value:
            rows.append((outcome, value))
    return rows


class _Sections:
    """A table's rows by section, laid out afterwards in the order wanted (`report_table`)."""

    def __init__(self) -> None:
        self.sections: list[list[tuple[str, str]]] = [[]]

    def add_row(self, figure: str, value: str, *, end_section: bool = False) -> None:
        self.sections[-1].append((figure, value))
        if end_section:
            self.add_section()

    def add_section(self) -> None:
        self.sections.append([])


PROGRESS_FIRST = (3, 0, 1, 2, 4)
"""`report_table`'s sections for `campaigns watch`: pacing, breaker and ETA, then contacts,
outcomes, then rates, attempts and talk time, then number health. A terminal's redrawn
table (rich Live) is cut at the terminal's height: what is cut is then the least urgent."""


def number_health_text(number: dict[str, Any]) -> str:
    """One caller ID's health (`campaigns.number_health.NumberHealth`, as JSON) in a line:
    calls, answer and human rates over the last day, FLAGGED, rested."""
    text = (
        f"{number['calls']} calls, answered {_rate(number['answer_rate'])}, "
        f"human {_rate(number['human_rate'])}"
    )
    if number["flagged"]:
        text += ", FLAGGED"
    if number["rested_at"]:
        text += f", rested since {number['rested_at']}"
    return text


def report_table(report: dict[str, Any], *, progress_first: bool = False) -> Table:
    """A rich table of a campaign report (`campaigns.reports.CampaignReport`, as JSON):
    contacts, outcomes, rates / attempts / talk time, pacing / breaker / ETA; with
    `progress_first`, in the order `PROGRESS_FIRST`."""
    title = f"campaign {report['campaign_id']} — {report['name']} ({report['status']})"
    table = _Sections()
    contacts = report["contacts"]
    table.add_row("contacts", str(contacts["total"]), end_section=False)
    for state in (
        "pending",
        "waiting_for_window",
        "waiting_for_frequency_cap",
        "scheduled_retry",
        "dialing",
        "live",
        "done",
        "expired",
        "cancelled",
    ):
        table.add_row(f"  {state.replace('_', ' ')}", str(contacts[state]))
    if contacts["frequency_cap_opens_at"]:
        table.add_row("  frequency cap opens", str(contacts["frequency_cap_opens_at"]))
    for reason, count in contacts["rejected"].items():
        table.add_row(f"  rejected at ingest: {reason}", str(count))
    table.add_section()
    for label, count in outcome_rows(report["outcomes"]):
        table.add_row(f"outcome: {label}", str(count))
    table.add_section()
    for name, value in report["rates"].items():
        table.add_row(RATE_LABELS.get(name, name.replace("_", " ")), _rate(value))
    attempts = report["attempts"]
    table.add_row("attempts", str(attempts["total"]))
    table.add_row("calls placed", str(attempts["calls_placed"]))
    table.add_row("calls per contact", f"{attempts['per_contact']:.2f}")
    if attempts["late_calls_hung_up"]:
        table.add_row("late calls hung up", str(attempts["late_calls_hung_up"]))
    table.add_row("opt-outs", str(attempts["opt_outs"]))
    table.add_row("voicemail drops", str(attempts["voicemail_drops"]))
    talk = report["talk_time"]
    table.add_row("talk time", f"{talk['total_s']} s")
    table.add_row("talk time mean / p90", f"{talk['mean_s']:.1f} s / {talk['p90_s']:.1f} s")
    table.add_row("billable minutes", str(talk["billable_minutes"]))
    table.add_section()
    pacing = report["pacing"]
    for scope, lease in pacing["leases"].items():
        table.add_row(f"leases ({scope})", f"{lease['in_use']} / {lease['cap']}")
    cps = pacing["cps"]
    table.add_row("calls per second", f"{cps['achieved']:.2f} / {cps['limit']:g}")
    delay = pacing["due_to_dial_s"]
    table.add_row("due to dial p50 / p95", f"{_seconds(delay['p50'])} / {_seconds(delay['p95'])}")
    if report["series"]:
        last = report["series"][-1]
        table.add_row(
            "this minute: dials / answers / live",
            f"{last['dials']} / {last['answers']} / {last['live']}",
        )
    breaker = report["breaker"]
    table.add_row("circuit breaker", f"{breaker['state']} ({breaker['trips']} trips)")
    if breaker["reason"]:
        table.add_row("breaker reason", breaker["reason"])
    elif report["status_reason"]:
        table.add_row("reason", report["status_reason"])
    if report["waiting_reason"]:
        table.add_row("waiting", report["waiting_reason"].replace("_", " "))
    eta = report["eta"]
    table.add_row("remaining contacts", str(eta["remaining"]))
    table.add_row("estimated finish", str(eta["finish_at"] or "—"))
    table.add_section()
    for number in report["numbers"]:
        table.add_row(f"number {number['number']}", number_health_text(number))
    laid_out = Table(title=title)
    laid_out.add_column("figure")
    laid_out.add_column("value", justify="right")
    order = PROGRESS_FIRST if progress_first else range(len(table.sections))
    for index in order:
        if laid_out.row_count:
            laid_out.add_section()
        for figure, value in table.sections[index]:
            laid_out.add_row(figure, value)
    return laid_out


def preview_table(preview: dict[str, Any]) -> Table:
    """A rich table of a campaign preview (`campaigns.preview.CampaignPreview`)."""
    table = Table(title=f"campaign {preview['campaign_id']} preview ({preview['status']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("pending", "callable_now", "waiting", "in_progress", "expired", "done"):
        table.add_row(key.replace("_", " "), str(preview[key]))
    for group in preview["waiting_by_zone"]:
        opens = group["opens_at"].isoformat() if group["opens_at"] else "never"
        table.add_row(
            f"waiting: {','.join(group['zones'])}", f"{group['contacts']} (opens {opens})"
        )
    if preview["waiting_for_frequency_cap"]:
        table.add_row(
            "waiting for frequency cap",
            f"{preview['waiting_for_frequency_cap']}"
            f" (opens {preview['frequency_cap_opens_at'].isoformat()})",
        )
    table.add_row("dial rate (calls/s)", f"{preview['dial_rate_cps']:.3g}")
    finish = preview["estimated_finish_at"]
    table.add_row("estimated finish", finish.isoformat() if finish else "not within a year")
    if preview["unreached"]:
        table.add_row("left undialled at end_at", str(preview["unreached"]))
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
    table = Table("at", "action", "from", "to", "actor", "reason", "changes")
    for row in rows:
        changes = row.get("changes") or {}
        table.add_row(
            row["at"],
            row["action"],
            row["from_status"] or "",
            row["to_status"] or "",
            row["actor"],
            row["reason"] or "",
            "; ".join(f"{k}: {v['before']} -> {v['after']}" for k, v in changes.items()),
        )
    return table
