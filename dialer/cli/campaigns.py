"""`dialer campaigns`: create from a CSV, start / pause / resume / cancel, report, watch,
export, list.

`create` takes one option per `campaigns.options.OperatorOptions` field, built from the
schema (name, type, default, description), the same fields the HTTP API takes as form
fields: a setting exists in both or in neither.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.live import Live
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import lifecycle
from campaigns.changes import change_campaign
from campaigns.history import campaign_events, event_json
from campaigns.options import (
    NULLABLE,
    PATCHABLE,
    CampaignOptions,
    CampaignPatch,
    MenuEntry,
    OperatorOptions,
    RetryOutcome,
    RetryRule,
)
from campaigns.preview import campaign_preview
from campaigns.reports import (
    SERIES_MINUTES,
    campaign_report,
    export_attempts,
    export_results,
    export_xlsx,
)
from dialer.cli.common import (
    AccountOpt,
    CampaignArg,
    JsonOpt,
    account_id,
    cli_actor,
    console,
    err_console,
    errors_reported,
    plain,
    print_json,
)
from dialer.cli.render import events_table, ingest_progress, preview_table, report_table
from dialer.runtime import get_runtime
from dialer.settings import get_settings
from models import Account, Campaign, CampaignStatus, EndReason, on_commit, transaction, utcnow

app = typer.Typer(help="Create, run and report campaigns.", no_args_is_help=True)

FLAGS = {"from_number": "--from", "column_map": "--map"}
"""The CLI's spelling of a setting, where it is not the field's name in kebab case
(`max_hold_s` is `--max-hold-s`)."""


AS_TEXT: dict[Any, Any] = {
    datetime | None: str | None,
    list[date]: list[str],
    dict[RetryOutcome, RetryRule]: str | None,
    dict[str, MenuEntry] | None: str | None,
}
"""Settings typer would parse itself but more narrowly than the schema (its datetimes take
no UTC offset), or not at all (the retry matrix, the menu): the CLI passes them on as text and
the schema parses them (ISO 8601, JSON)."""


def setting_options(
    schema: type[BaseModel] = OperatorOptions, only: tuple[str, ...] | None = None
) -> list[inspect.Parameter]:
    """One typer option per field of `schema` (`OperatorOptions`, or `ScheduleOptions`
    for a schedule): its type, default and description. A required field's option, or one
    whose default is built per use, defaults to None, so that its absence is the schema's
    `missing_field` error or its default, reported or applied like any other. With `only`
    (a change: `campaigns.options.PATCHABLE`), just those fields, each defaulting to None
    (left out: unchanged)."""
    options = []
    for name, field in schema.model_fields.items():
        if only is not None and name not in only:
            continue
        flag = typer.Option(*FLAGS.get(name, "").split(), help=field.description)
        required = field.is_required() or only is not None
        kind: Any = AS_TEXT.get(field.annotation, field.annotation)
        options.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None if required or field.default_factory else field.default,
                annotation=Annotated[kind | None if required else kind, flag],
            )
        )
    return options


def with_settings(
    command: Callable[..., None], only: tuple[str, ...] | None = None
) -> Callable[..., None]:
    """`command` with its `**settings` replaced by the operator's settings as options
    (after its first parameter, so `--help` lists them in the schema's order); with
    `only`, those settings alone (`setting_options`)."""
    signature = inspect.signature(command, eval_str=True)
    first, *rest = (p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD)
    parameters = [first, *setting_options(only=only), *rest]
    # typer reads a command's parameters from its signature (`inspect.signature`).
    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return command


@app.command("create")
@with_settings
def create(
    *,
    csv: Annotated[Path, typer.Option("--csv", help="Contacts CSV.", exists=True, dir_okay=False)],
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
    **settings: Any,
) -> None:
    """Create a draft campaign from a CSV; print the ingest summary."""
    config = get_settings()
    with errors_reported(), csv.open("rb") as source:
        options = CampaignOptions(**{k: v for k, v in settings.items() if v is not None})
        owner = account_id(account)
        with ingest_progress(csv.stat().st_size, err_console, enabled=not as_json) as advance:
            imported = lifecycle.import_campaign(
                config.database_url, config.data_dir, owner, options, source, progress=advance
            )
    summary = imported.to_json()
    if as_json:
        print_json(summary)
        return
    console.print(
        f"campaign {imported.campaign_id}: {summary['rows']} rows, {summary['accepted']} accepted"
    )
    for reason, count in summary["rejected"].items():
        console.print(f"  rejected {reason}: {count}")
    if imported.rejected_csv:
        console.print(f"  rejected rows: {imported.rejected_csv}")


# --- transitions ---------------------------------------------------------------------------


def _transition(
    campaign_id: int, account: str, change: Callable[[Session, int, int], Campaign]
) -> None:
    """Apply `change` in one transaction and print the new status; a campaign now running
    gets its account's pacer woken once the change commits."""
    # Imported here: sending a task loads Celery, which the other commands do not need.
    from workers.enqueue import kick_pacer

    with errors_reported(), transaction(get_settings().database_url) as session:
        campaign = change(session, account_id(account), campaign_id)
        status = campaign.status
        if status is CampaignStatus.RUNNING:
            owner = campaign.account_id
            on_commit(session, lambda: kick_pacer(owner))
    console.print(f"campaign {campaign_id}: {status.value}")


@app.command("start")
def start(campaign_id: CampaignArg, account: AccountOpt = "default") -> None:
    """Start a draft campaign: the pacer begins dialling it."""
    _transition(campaign_id, account, partial(lifecycle.start, actor=cli_actor()))


@app.command("pause")
def pause(campaign_id: CampaignArg, account: AccountOpt = "default") -> None:
    """Pause a running campaign: no new calls; calls already live finish."""
    _transition(campaign_id, account, partial(lifecycle.pause, actor=cli_actor()))


@app.command("resume")
def resume(campaign_id: CampaignArg, account: AccountOpt = "default") -> None:
    """Resume a paused campaign (also after the circuit breaker, once its cause is fixed)."""
    _transition(campaign_id, account, partial(lifecycle.resume, actor=cli_actor()))


@app.command("cancel")
def cancel(
    campaign_id: CampaignArg,
    account: AccountOpt = "default",
    hang_up: Annotated[bool, typer.Option("--hang-up", help="Also hang up live calls.")] = False,
) -> None:
    """Cancel a campaign: pending contacts are cancelled; live calls finish (or are hung up
    with --hang-up). Dials not yet sent are not made."""
    from workers.enqueue import hang_up as hang_up_call

    def change(session: Session, owner: int, campaign_id: int) -> Campaign:
        campaign = lifecycle.cancel(session, owner, campaign_id, actor=cli_actor())
        live = lifecycle.hang_up_on_cancel(session, campaign_id) if hang_up else []
        for attempt_id in live:
            on_commit(session, partial(hang_up_call, attempt_id, EndReason.CAMPAIGN_CANCELED))
        return campaign

    _transition(campaign_id, account, change)


@app.command("set")
@partial(with_settings, only=PATCHABLE)
def set_(
    campaign_id: CampaignArg,
    *,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why: kept in the campaign's history.")
    ] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            help=f"Clear a setting ({', '.join(sorted(NULLABLE))}): the campaign's own CPS "
            "(the account's alone applies), its end_at (no end), its menu's keys (the "
            "opt-out line alone), its voicemail message. Repeatable.",
        ),
    ] = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
    **settings: Any,
) -> None:
    """Change a draft, running or paused campaign: its caps, CPS, calling window and days,
    end_at, caller ID (--from) or caller-ID pool (one replaces the other), message,
    voicemail message, menu and opt-out line (what is left out of the menu stays),
    recording. Checked as at creation; recorded in its history with --reason and
    the values before and after; the pacer uses the new limits from its next round, and
    contacts not yet called get the new message and menu."""
    from workers.enqueue import kick_pacer

    config = get_settings()
    with errors_reported(), transaction(config.database_url) as session:
        owner = account_id(account)
        current = lifecycle.get_campaign(session, owner, campaign_id)
        given = {k: v for k, v in settings.items() if v is not None}
        given.update({name: None for name in clear or []})
        if reason is not None:
            given["reason"] = reason
        change = CampaignPatch.model_validate(given, context={"timezone": current.timezone})
        campaign, event = change_campaign(
            session,
            session.get_one(Account, owner),
            campaign_id,
            change,
            actor=cli_actor(),
            now=get_runtime().clock(),
        )
        if campaign.status is CampaignStatus.RUNNING:
            on_commit(session, lambda: kick_pacer(owner))
        shown = event_json(event)
    if as_json:
        print_json(shown)
        return
    changes = shown["changes"] or {}
    console.print(f"campaign {campaign_id}: {len(changes)} setting(s) changed")
    for name, values in changes.items():
        console.print(f"  {name}: {values['before']} -> {values['after']}", markup=False)


# --- reading -------------------------------------------------------------------------------


def _report(campaign_id: int, owner: int, minutes: int = SERIES_MINUTES) -> dict[str, Any]:
    with transaction(get_settings().database_url) as session:
        figures = campaign_report(session, get_runtime().pool, owner, campaign_id, minutes=minutes)
    return figures.model_dump(mode="json")


MinutesOpt = Annotated[
    int, typer.Option("--minutes", min=1, max=1440, help="Minutes in the per-minute series.")
]


@app.command("report")
def report(
    campaign_id: CampaignArg,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
    minutes: MinutesOpt = SERIES_MINUTES,
) -> None:
    """Print a campaign's figures (with --json, the report API's object)."""
    with errors_reported():
        figures = _report(campaign_id, account_id(account), minutes)
    if as_json:
        print_json(figures)
        return
    console.print(report_table(figures))


@app.command("preview")
def preview(
    campaign_id: CampaignArg, account: AccountOpt = "default", as_json: JsonOpt = False
) -> None:
    """Who is callable now, who waits for their window (by zone), who expired, and the
    estimated finish at the campaign's caps, CPS and windows."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        figures = campaign_preview(session, account_id(account), campaign_id, utcnow())
    if as_json:
        print_json(figures.model_dump(mode="json"))
        return
    console.print(preview_table(figures.model_dump()))


@app.command("watch")
def watch(
    campaign_id: CampaignArg,
    account: AccountOpt = "default",
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between refreshes.")
    ] = 1.0,
    iterations: Annotated[
        int | None, typer.Option("--iterations", min=1, help="Stop after this many refreshes.")
    ] = None,
) -> None:
    """Show a campaign's figures live until it finishes (or Ctrl-C, or --iterations).
    Pacing and the estimated finish come first: on a terminal the table is redrawn in place
    (rich Live) and cut at the terminal's height; otherwise each refresh prints a new table,
    as a log would."""
    with errors_reported():
        owner = account_id(account)
        figures = _report(campaign_id, owner)
        live = Live(console=console, auto_refresh=False) if console.is_terminal else None

        def show(figures: dict[str, Any]) -> None:
            table = report_table(figures, progress_first=True)
            if live is None:
                console.print(table)
            else:
                live.update(table, refresh=True)

        with live or nullcontext():
            show(figures)
            shown = 1
            try:
                while not figures["finished"] and (iterations is None or shown < iterations):
                    time.sleep(interval)
                    figures = _report(campaign_id, owner)
                    show(figures)
                    shown += 1
            except KeyboardInterrupt:
                pass
    if figures["finished"]:
        console.print(f"campaign {campaign_id}: finished ({figures['status']})")


@app.command("export")
def export(
    campaign_id: CampaignArg,
    output: Annotated[
        Path | None, typer.Option("--out", "--output", help="File to write (default: stdout).")
    ] = None,
    attempts: Annotated[
        bool, typer.Option("--attempts", help="One row per attempt instead of per contact.")
    ] = False,
    xlsx: Annotated[
        bool,
        typer.Option("--xlsx", help="An XLSX workbook (text cells: spreadsheets keep the +)."),
    ] = False,
    account: AccountOpt = "default",
) -> None:
    """Write every contact's result (or every attempt, with --attempts), streamed: CSV with
    values escaped against formula injection and E.164 numbers as they are, or XLSX."""
    what = "attempts" if attempts else "contacts"
    with errors_reported(), transaction(get_settings().database_url) as session:
        owner = account_id(account)
        if xlsx:
            with output.open("wb") if output else nullcontext(sys.stdout.buffer) as binary:
                written = export_xlsx(session, owner, campaign_id, binary, attempts=attempts)
        else:
            write = export_attempts if attempts else export_results
            with (
                output.open("w", newline="", encoding="utf-8")
                if output
                else nullcontext(sys.stdout)
            ) as sink:
                written = write(session, owner, campaign_id, sink)
    if output is not None:
        console.print(f"{written} {what} written to {output}", soft_wrap=True)


@app.command("list")
def list_(account: AccountOpt = "default", as_json: JsonOpt = False) -> None:
    """List the account's campaigns."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        owner = account_id(account)
        rows = [
            {"id": c.id, "name": c.name, "status": c.status.value, "created_at": c.created_at}
            for c in session.scalars(
                select(Campaign).where(Campaign.account_id == owner).order_by(Campaign.id)
            )
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "status", "created")
    for row in rows:
        table.add_row(*(plain(row[key]) for key in ("id", "name", "status", "created_at")))
    console.print(table)


@app.command("history")
def history(
    campaign_id: CampaignArg, account: AccountOpt = "default", as_json: JsonOpt = False
) -> None:
    """A campaign's history: each transition with who made it, when and why."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        events = campaign_events(session, account_id(account), campaign_id).items
        rows = [event_json(e) for e in events]
    if as_json:
        print_json(rows)
        return
    console.print(events_table(rows))
