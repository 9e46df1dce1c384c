"""`dialer schedules`: recurring reminder batches (`campaigns.schedules`): create, list,
pause, resume, delete, run-now, runs, history.

`create` takes the campaign settings as `dialer campaigns create` does, one option per
`campaigns.options.ScheduleOptions` field: no `--name` and `--timezone`, which are the
schedule's own (each campaign is named after the schedule and its occurrence), and no fixed
`--start-at` / `--end-at`: `--expire-after-s` is counted from each occurrence.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from campaigns import schedules
from campaigns.accounts import get_account
from campaigns.history import event_json
from campaigns.options import ScheduleOptions
from dialer.cli.campaigns import setting_options
from dialer.cli.common import (
    AccountOpt,
    JsonOpt,
    account_id,
    cli_actor,
    console,
    errors_reported,
    print_json,
)
from dialer.cli.render import events_table
from dialer.settings import get_settings
from models import Schedule, ScheduleRun, transaction

app = typer.Typer(help="Recurring reminder batches: a campaign per cron occurrence.")

ScheduleArg = Annotated[int, typer.Argument(help="Schedule id.")]


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """A schedule as JSON-ready types."""
    return {
        "id": schedule.id,
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "csv_path": schedule.csv_path,
        "catch_up_s": schedule.catch_up_s,
        "status": schedule.status.value,
        "next_run_at": schedule.next_run_at.isoformat(),
        "options": schedule.options,
    }


def run_json(run: ScheduleRun) -> dict[str, Any]:
    """A run as JSON-ready types."""
    return {
        "id": run.id,
        "occurrence": run.occurrence.isoformat(),
        "manual": run.manual,
        "status": run.status.value,
        "campaign_id": run.campaign_id,
        "rows": run.rows,
        "accepted": run.accepted,
        "rejected": run.rejected,
        "pushed": run.pushed,
        "error_code": run.error_code,
        "error_message": run.error_message,
    }


def _with_campaign_settings(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with its `**settings` replaced by the campaign settings as options."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    extra = setting_options(ScheduleOptions)
    command.__signature__ = signature.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    return command


@app.command("create")
@_with_campaign_settings
def create(
    *,
    name: Annotated[str, typer.Option(help="Schedule name (campaigns are named after it).")],
    cron: Annotated[str, typer.Option(help='Five-field cron, e.g. "0 9 * * mon-fri".')],
    timezone: Annotated[str, typer.Option(help="IANA zone the cron is read in.")],
    csv: Annotated[
        Path, typer.Option("--csv", help="Contacts CSV, read afresh at each occurrence.")
    ],
    catch_up_s: Annotated[
        int, typer.Option(help="Fire a missed occurrence this young (seconds) once.")
    ] = schedules.DEFAULT_CATCH_UP_S,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
    **settings: Any,
) -> None:
    """Create a schedule; print its id and first occurrence."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        owner = get_account(session, account)
        schedule = schedules.create_schedule(
            session,
            owner,
            name=name,
            cron=cron,
            timezone=timezone,
            csv_path=csv,
            options={k: v for k, v in settings.items() if v is not None},
            catch_up_s=catch_up_s,
            actor=cli_actor(),
        )
        warnings = schedules.frequency_cap_warnings(schedule, owner)
        reply = {
            "schedule_id": schedule.id,
            "next_run_at": schedule.next_run_at.isoformat(),
            "warnings": [{"code": w.code, "message": w.message} for w in warnings],
        }
    if as_json:
        print_json(reply)
        return
    console.print(f"schedule {reply['schedule_id']}: next run at {reply['next_run_at']}")
    for warning in warnings:
        console.print(f"[yellow]warning[/yellow] {warning.code}: {warning.message}", markup=True)


@app.command("list")
def list_(account: AccountOpt = "default", as_json: JsonOpt = False) -> None:
    """List the account's schedules."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        owner = get_account(session, account)
        rows = [schedule_json(s) for s in schedules.list_schedules(session, owner.id).items]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "cron", "timezone", "status", "next run")
    for row in rows:
        keys = ("id", "name", "cron", "timezone", "status", "next_run_at")
        table.add_row(*(str(row[key]) for key in keys))
    console.print(table)


def _change(schedule_id: int, account: str, change: Callable[[Session, int, int], object]) -> None:
    with errors_reported(), transaction(get_settings().database_url) as session:
        change(session, account_id(account), schedule_id)


@app.command("pause")
def pause(schedule_id: ScheduleArg, account: AccountOpt = "default") -> None:
    """Pause a schedule: nothing fires until it is resumed."""
    _change(
        schedule_id, account, lambda s, a, i: schedules.pause_schedule(s, a, i, actor=cli_actor())
    )
    console.print(f"schedule {schedule_id}: paused")


@app.command("resume")
def resume(schedule_id: ScheduleArg, account: AccountOpt = "default") -> None:
    """Resume a schedule from its next occurrence (missed ones are not caught up)."""
    _change(
        schedule_id, account, lambda s, a, i: schedules.resume_schedule(s, a, i, actor=cli_actor())
    )
    console.print(f"schedule {schedule_id}: active")


@app.command("delete")
def delete(schedule_id: ScheduleArg, account: AccountOpt = "default") -> None:
    """Delete a schedule: it fires no more; its runs and campaigns stay."""
    _change(
        schedule_id, account, lambda s, a, i: schedules.delete_schedule(s, a, i, actor=cli_actor())
    )
    console.print(f"schedule {schedule_id}: deleted")


@app.command("run-now")
def run_now(
    schedule_id: ScheduleArg, account: AccountOpt = "default", as_json: JsonOpt = False
) -> None:
    """Fire a schedule at once: a campaign from its file and pushed contacts, started."""
    from workers.enqueue import kick_pacer  # sending a task loads Celery

    config = get_settings()
    with errors_reported():
        fired = schedules.run_now(
            config.database_url,
            config.data_dir,
            account_id(account),
            schedule_id,
            actor=cli_actor(),
        )
    if fired.campaign_id is not None:
        kick_pacer(fired.account_id)
    reply = {"run_id": fired.run_id, "status": fired.status.value, "campaign_id": fired.campaign_id}
    if as_json:
        print_json(reply)
        return
    console.print(f"schedule {schedule_id}: run {fired.run_id} {fired.status.value}", end="")
    console.print(f", campaign {fired.campaign_id}" if fired.campaign_id else "")


@app.command("runs")
def runs(
    schedule_id: ScheduleArg, account: AccountOpt = "default", as_json: JsonOpt = False
) -> None:
    """A schedule's runs, newest first."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        runs = schedules.list_runs(session, account_id(account), schedule_id).items
        rows = [run_json(r) for r in runs]
    if as_json:
        print_json(rows)
        return
    table = Table("occurrence", "status", "campaign", "rows", "accepted", "rejected", "error")
    for row in rows:
        error = f"{row['error_code']}: {row['error_message']}" if row["error_code"] else ""
        table.add_row(
            row["occurrence"],
            row["status"] + (" (run now)" if row["manual"] else ""),
            str(row["campaign_id"] or ""),
            str(row["rows"]),
            str(row["accepted"]),
            str(row["rejected"]),
            error,
        )
    console.print(table)


@app.command("history")
def history(
    schedule_id: ScheduleArg, account: AccountOpt = "default", as_json: JsonOpt = False
) -> None:
    """A schedule's history: created, fired, skipped, paused, resumed, changed, deleted."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        events = schedules.schedule_events(session, account_id(account), schedule_id).items
        rows = [event_json(e) for e in events]
    if as_json:
        print_json(rows)
        return
    console.print(events_table(rows))
