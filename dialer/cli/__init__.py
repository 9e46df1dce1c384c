"""The `dialer` command line (typer).

Every command that touches data acts on the account named by `--account` (default
`default`, created on first use with the default caps and a simulator caller ID). A failing
command prints `error: <code>: <message>` on stderr and exits non-zero.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import select

from campaigns import dnc, lifecycle
from campaigns.accounts import get_or_create_account, hash_api_key
from campaigns.csvsource import IngestError
from campaigns.reports import campaign_report, export_results
from dialer.cli.render import report_table
from dialer.errors import DialerError
from dialer.settings import get_settings
from models import Campaign, on_commit, transaction

app = typer.Typer(help="Outbound-call campaign dialer.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
campaigns_app = typer.Typer(help="Create, run and report campaigns.", no_args_is_help=True)
dnc_app = typer.Typer(help="The account's do-not-call list.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts and API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(dnc_app, name="dnc")
app.add_typer(accounts_app, name="accounts")

console = Console()
err_console = Console(stderr=True)

AccountOpt = Annotated[str, typer.Option("--account", help="Account name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def fail(code: str, message: str) -> NoReturn:
    """Print `error: <code>: <message>` on stderr and exit 1."""
    err_console.print(f"error: {code}: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def errors_reported() -> Iterator[None]:
    """Turn the product's coded errors into the CLI's error line and exit status."""
    try:
        yield
    except (DialerError, IngestError) as error:
        fail(error.code, error.message)


def account_id(name: str) -> int:
    """The id of account `name`, created on first use."""
    with transaction(get_settings().database_url) as session:
        return get_or_create_account(session, name).id


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database if it does not exist and apply every migration."""
    from models.migrate import upgrade

    created = upgrade(get_settings().database_url)
    console.print("database created and migrated" if created else "database migrated")


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    time_scale: Annotated[float, typer.Option(help="0.01 makes a 60 s call last 0.6 s.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed for outcomes and faults.")] = 0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=P, e.g. 502-after=0.05 (repeatable); NAME one of 502-before, "
            "502-after, 429, slow, slow-before, callback-lost, callback-duplicate, "
            "callback-reorder (see README)."
        ),
    ] = None,
    cps_limit: Annotated[float | None, typer.Option(help="Account calls per second.")] = None,
    concurrency_limit: Annotated[int | None, typer.Option(help="Most live calls.")] = None,
) -> None:
    """Run the Twilio-compatible carrier simulator."""
    from dialer.simulator.config import SimulatorConfig, parse_faults
    from dialer.simulator.runner import serve

    settings = get_settings()
    try:
        faults = parse_faults(fault or [])
    except ValueError as error:
        fail("invalid_fault", str(error))
    config = SimulatorConfig(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        time_scale=time_scale,
        seed=seed,
        faults=faults,
        cps_limit=cps_limit,
        concurrency_limit=concurrency_limit,
    )
    serve(config, host, port)


@app.command()
def flower(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5555,
) -> None:
    """Run the Flower dashboard over the workers, behind basic auth (FLOWER_USER,
    FLOWER_PASSWORD)."""
    settings = get_settings()
    if settings.flower_password is None or not settings.flower_password.get_secret_value():
        fail("flower_password_unset", "set FLOWER_PASSWORD: Flower shows every task's arguments")
    auth = f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
    args = ["-m", "celery", "-A", "workers", "flower", f"--port={port}", f"--basic-auth={auth}"]
    os.execv(sys.executable, [sys.executable, *args])  # noqa: S606  # Flower replaces this process


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API and provider webhooks (uvicorn)."""
    import uvicorn

    uvicorn.run("dialer.web.asgi:app", host=host, port=port, log_level="warning")


@campaigns_app.command("create")
def campaigns_create(
    name: Annotated[str, typer.Option(help="Campaign name.")],
    csv: Annotated[Path, typer.Option("--csv", help="Contacts CSV.", exists=True, dir_okay=False)],
    from_: Annotated[str | None, typer.Option("--from", help="Caller ID, E.164.")] = None,
    default_region: Annotated[str, typer.Option(help="Region for national numbers.")] = "US",
    message: Annotated[str, typer.Option(help="Spoken text; {column} placeholders.")] = (
        lifecycle.DEFAULT_MESSAGE
    ),
    phone_column: Annotated[str | None, typer.Option(help="Phone column name.")] = None,
    max_concurrency: Annotated[int, typer.Option(help="Most live calls.")] = 10,
    cps: Annotated[float | None, typer.Option(help="Calls per second.")] = None,
    max_attempts: Annotated[int, typer.Option(help="Attempts per contact.")] = 3,
    max_hold_seconds: Annotated[int | None, typer.Option(help="Hang up after (s).")] = None,
    machine_detection: Annotated[bool, typer.Option(help="Ask for AMD.")] = False,
    gather_dtmf: Annotated[bool, typer.Option(help="Press 1 to confirm, 2 to cancel.")] = False,
    priority: Annotated[int, typer.Option(help="Higher goes first (reminders).")] = 0,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Create a draft campaign from a CSV; print the ingest summary."""
    settings = get_settings()
    options = lifecycle.CampaignOptions(
        name=name,
        message=message,
        from_number=from_,
        default_region=default_region,
        phone_column=phone_column,
        max_concurrency=max_concurrency,
        cps=cps,
        max_attempts=max_attempts,
        max_hold_s=max_hold_seconds,
        machine_detection=machine_detection,
        gather_dtmf=gather_dtmf,
        priority=priority,
    )
    with errors_reported(), csv.open("rb") as source:
        owner = account_id(account)
        with _progress(csv.stat().st_size, enabled=not as_json) as advance:
            imported = lifecycle.import_campaign(
                settings.database_url, settings.data_dir, owner, options, source, progress=advance
            )
    if as_json:
        print_json(imported.to_json())
        return
    summary = imported.to_json()
    console.print(
        f"campaign {imported.campaign_id}: {summary['rows']} rows, {summary['accepted']} accepted"
    )
    for reason, count in summary["rejected"].items():
        console.print(f"  rejected {reason}: {count}")
    if imported.rejected_csv:
        console.print(f"  rejected rows: {imported.rejected_csv}")


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar over the bytes read, for files over 1 MB."""
    if not enabled or total < 1_000_000:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("ingesting", total=total)
        yield lambda done: progress.update(task, completed=done)


def _transition(action: str) -> Callable[..., None]:
    service = getattr(lifecycle, action)

    def command(
        campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
        account: AccountOpt = "default",
    ) -> None:
        from workers.enqueue import kick_pacer

        with errors_reported(), transaction(get_settings().database_url) as session:
            campaign = service(session, account_id(account), campaign_id)
            if campaign.status.value == "running":
                on_commit(session, lambda: kick_pacer(campaign.account_id))
        console.print(f"campaign {campaign_id}: {campaign.status.value}")

    command.__doc__ = f"{action.capitalize()} a campaign."
    return command


for _action in ("start", "pause", "resume", "cancel"):
    campaigns_app.command(_action)(_transition(_action))


@campaigns_app.command("report")
def campaigns_report(
    campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Print a campaign's figures."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        report = campaign_report(session, account_id(account), campaign_id)
    if as_json:
        print_json(report.model_dump())
        return
    console.print(report_table(report.model_dump()))


@campaigns_app.command("export")
def campaigns_export(
    campaign_id: Annotated[int, typer.Argument(help="Campaign id.")],
    output: Annotated[
        Path | None, typer.Option(help="CSV file to write (default: stdout).")
    ] = None,
    account: AccountOpt = "default",
) -> None:
    """Write every contact's result as CSV (values escaped against formula injection)."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        owner = account_id(account)
        if output is None:
            export_results(session, owner, campaign_id, sys.stdout)
            return
        with output.open("w", newline="", encoding="utf-8") as sink:
            written = export_results(session, owner, campaign_id, sink)
    console.print(f"{written} contacts written to {output}")


@campaigns_app.command("list")
def campaigns_list(account: AccountOpt = "default", as_json: JsonOpt = False) -> None:
    """List the account's campaigns."""
    with transaction(get_settings().database_url) as session:
        owner = get_or_create_account(session, account)
        rows = [
            {"id": c.id, "name": c.name, "status": c.status.value, "created_at": c.created_at}
            for c in session.scalars(
                select(Campaign).where(Campaign.account_id == owner.id).order_by(Campaign.id)
            )
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "status", "created")
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("id", "name", "status", "created_at")))
    console.print(table)


@dnc_app.command("add")
def dnc_add(
    numbers: Annotated[list[str], typer.Argument(help="Numbers to block.")],
    default_region: Annotated[str, typer.Option(help="Region for national numbers.")] = "US",
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    account: AccountOpt = "default",
) -> None:
    """Add numbers to the do-not-call list."""
    with errors_reported(), transaction(get_settings().database_url) as session:
        added = dnc.add(session, account_id(account), numbers, default_region, reason=reason)
    console.print(f"{added} added")


@dnc_app.command("import")
def dnc_import(
    file: Annotated[Path, typer.Argument(help="CSV with a phone column.", exists=True)],
    default_region: Annotated[str, typer.Option(help="Region for national numbers.")] = "US",
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Import a CSV of numbers into the do-not-call list."""
    owner = account_id(account)
    with (
        errors_reported(),
        file.open("rb") as source,
        transaction(get_settings().database_url) as session,
    ):
        summary = dnc.import_csv(session, owner, source, default_region)
    if as_json:
        print_json(summary.to_json())
    else:
        console.print(summary.to_json())


@accounts_app.command("create-key")
def accounts_create_key(account: AccountOpt = "default") -> None:
    """Issue a new API key for the account (replaces the old one) and print it once."""
    key = secrets.token_urlsafe(32)
    with transaction(get_settings().database_url) as session:
        get_or_create_account(session, account).api_key_hash = hash_api_key(key)
    sys.stdout.write(key + "\n")


@app.command()
def demo(
    contacts: Annotated[int | None, typer.Option(help="Generate N contacts.")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Contacts CSV.", exists=True)] = None,
    time_scale: Annotated[float, typer.Option(help="Simulated time scale.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    max_concurrency: Annotated[int, typer.Option(help="Pool cap.")] = 20,
    cps: Annotated[float, typer.Option(help="Calls per second.")] = 20.0,
    max_attempts: Annotated[int, typer.Option(help="Attempts per contact.")] = 3,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="Simulator fault NAME=P (repeatable; names as `dialer simulator`)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a whole campaign through the simulator with real workers, then report."""
    from dialer.cli.demo import DemoOptions, run_demo
    from dialer.cli.devstack import StackStopped
    from dialer.simulator.config import parse_faults

    try:
        parse_faults(fault or [])  # refuse a bad fault here, not as a simulator that died
    except ValueError as error:
        fail("invalid_fault", str(error))
    options = DemoOptions(
        contacts=contacts,
        csv=csv,
        time_scale=time_scale,
        seed=seed,
        max_concurrency=max_concurrency,
        cps=cps,
        max_attempts=max_attempts,
        faults=fault or [],
        as_json=as_json,
    )
    try:
        with errors_reported():
            result = run_demo(options, console if not as_json else err_console)
    except StackStopped as stopped:
        # Every child is stopped; now end as the signal would have, for whoever waits on us.
        signal.signal(stopped.signum, signal.SIG_DFL)
        os.kill(os.getpid(), stopped.signum)
        raise
    if as_json:
        print_json(result)


def main() -> None:
    """Console-script entry point."""
    app()
