"""`dialer demo`: one campaign end to end on this machine, with every real part.

Migrates the database, starts the carrier simulator, the HTTP API, a Celery worker and
Celery beat as child processes, creates a fresh demo account, ingests the CSV, starts the
campaign, shows live progress, waits for every contact to reach a final state, prints the
report once (with the opt-outs: the simulated people press 9 on some calls), the account,
the command that reports the campaign again and where the logs are, and stops every child
it started, also on Ctrl-C, SIGHUP (its terminal closed) and SIGTERM; if the demo is
killed outright, its children exit too (see `devstack`). The concurrency and double-dial
figures come from the simulator's `GET /_sim/stats`, not from the dialer's bookkeeping.

With `--serve` the demo leads to the campaign page: it gives the API a session secret
(`SESSION_SECRET`, made for the run when unset) and creates an API key for its account,
prints the page's URL and that key as soon as the campaign starts, and after the report
keeps the stack up until Ctrl-C (or SIGHUP, SIGTERM), so the page can be watched and
signed in to.
"""

from __future__ import annotations

import csv
import io
import secrets
import shlex
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import phonenumbers
from rich.console import Console
from rich.live import Live

from campaigns import lifecycle
from campaigns.accounts import create_account, create_api_key, get_account
from campaigns.reports import campaign_report
from dialer.cli.common import cli_actor
from dialer.cli.devstack import StackStopped, local_stack
from dialer.cli.render import report_table
from dialer.errors import DialerError
from dialer.runtime import get_runtime
from dialer.settings import get_settings
from dialer.windows import daytime_zone
from models import transaction, utcnow
from models.migrate import upgrade

DEMO_MESSAGE = (
    "Hello {first_name}, this is Riverside Clinic reminding you of your appointment "
    "on {appointment_time}."
)
DEMO_MENU = {"1": "confirm", "2": "cancel"}
"""The demo's keypress menu; the opt-out line (press 9) is added as on every campaign."""
DEMO_KEYPRESSES = {"1": 0.5, "2": 0.1, "9": 0.08}
"""What the simulated people press at the menu (the rest press nothing): some opt out."""
PAGE_HINT = (
    "Campaign page: run `dialer demo --serve` (`make demo-serve`) to keep the stack up and "
    "sign in to the page with a key it prints"
)
DEMO_POOL = ["+15005550006", "+12125550199", "+14155550199"]
"""The demo campaign's caller-ID pool: Twilio's magic test number, and two fictional
numbers (NANP 555-01xx) the demo's simulator owns, in New York and San Francisco, so the
sample's contacts there are called from a local number and the others spread by use."""
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia"]


@dataclass
class DemoOptions:
    """What `dialer demo` was asked for. Rates in calls per second."""

    contacts: int | None = None
    csv: Path | None = None
    time_scale: float = 0.01
    seed: int = 7
    max_concurrency: int = 20
    cps: float = 20.0
    max_attempts: int = 3
    faults: list[str] = field(default_factory=list)
    as_json: bool = False
    worker_concurrency: int = 8
    serve: bool = False
    hosts: int = 1
    """Hosts the stack runs on (`dialer.cli.chaos`); 1: the one-host stack of `devstack`."""
    chaos: bool = False
    """Cut the pacer's host off mid-campaign, past the pacer lock's TTL, then heal it."""
    broker: str = "redis"
    """Celery's broker: `redis` (`REDIS_URL`) or `rabbitmq` (`CELERY_BROKER_URL` when it
    names one, else the local node's default vhost)."""
    sentinel: bool = False
    """Run the pool's Redis as a master, two replicas and three Sentinels, and kill the
    master after the partition (`dialer.cli.chaos_demo`)."""


class DemoAccount(NamedTuple):
    """The fresh account the demo runs its campaign in."""

    id: int
    name: str


@lru_cache(maxsize=1)
def fictional_area_codes() -> list[int]:
    """US area codes whose 555-01xx numbers phonenumbers accepts as valid.

    555-0100 through 555-0199 are reserved for fictional use in every NANP area code
    (NANPA, "555 NXX assignment guidelines").
    """
    return [
        npa
        for npa in range(201, 990)
        if phonenumbers.is_valid_number(phonenumbers.parse(f"+1{npa}5550100"))
    ]


def generated_contacts(n: int, first: int = 0) -> bytes:
    """A CSV of `n` fictional contacts (NANP 555-01xx numbers across area codes), from the
    `first`-th such number on. Their `timezone` is one where it is now early afternoon
    (`dialer.windows.daytime_zone`), so their calling window is open whenever the demo runs.

    Raises:
        DialerError: `too_many_contacts` beyond the fictional numbers available.
    """
    area_codes = fictional_area_codes()
    capacity = len(area_codes) * 100
    if not 0 < n <= capacity - first:
        raise DialerError("too_many_contacts", f"--contacts must be 1-{capacity - first}")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["first_name", "phone", "appointment_time", "timezone"])
    zone = daytime_zone(utcnow())
    for i in range(first, first + n):
        area = area_codes[i // 100]
        phone = f"({area}) 555-01{i % 100:02d}"
        writer.writerow([FIRST_NAMES[i % len(FIRST_NAMES)], phone, "Monday at 9:30", zone])
    return out.getvalue().encode()


def sample_csv() -> bytes:
    """The bundled appointment-reminder sample."""
    return files("campaigns").joinpath("samples/appointments.csv").read_bytes()


def in_daytime(source: bytes) -> bytes:
    """`source` (a CSV without a `timezone` column) with one naming a zone where it is now
    early afternoon (`dialer.windows.daytime_zone`): the demo's fictional contacts are
    inside their calling window whenever it runs, as `generated_contacts` are. A file given
    with `--csv` keeps its contacts' own zones."""
    rows = list(csv.reader(io.StringIO(source.decode("utf-8-sig"))))
    zone = daytime_zone(utcnow())
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*rows[0], "timezone"])
    writer.writerows([*row, zone] for row in rows[1:] if row)
    return out.getvalue().encode()


def run_demo(options: DemoOptions, console: Console) -> dict[str, Any]:
    """Run the demo; returns the summary (`--json` prints it as the last line of stdout):

    `{"campaign_id", "account", "rows", "accepted", "rejected", "outcomes", "calls_placed",
    "answer_rate", "pool_cap", "max_concurrent_observed", "max_dials_per_number",
    "calls_by_caller_id", "elapsed_s", "report_command", "logs"}`: `rows` the CSV's data
    rows, `accepted` how many became contacts, `rejected` the refused ones by reason
    (`{"invalid_number": 2}`), `answer_rate` calls answered / calls placed (0..1, None
    with no call placed), the `max_*` figures observed by the simulator (`GET
    /_sim/stats`), `calls_by_caller_id` the calls each number of the campaign's caller-ID
    pool (`DEMO_POOL`) presented, `elapsed_s` in seconds, `report_command` the command
    that prints this campaign's report afterwards, `logs` the
    children's log directory. Without `--json` the final report table is printed once,
    followed by these figures as plain lines, and (without `--serve`) how to see the page.

    With `options.serve`, also `"page"` (the campaign page's URL) and `"api_key"` (a key of
    the demo's account to sign in with), printed as soon as the campaign starts; after the
    report the stack stays up until Ctrl-C, which ends the demo normally.

    Raises:
        StackStopped: SIGHUP or SIGTERM arrived; every child has been stopped.
    """
    settings = get_settings()
    upgrade(settings.migration_url)
    run_dir = settings.data_dir / "demo"
    started = time.monotonic()
    extra_env = {}
    if options.serve and settings.session_secret is None:
        extra_env["SESSION_SECRET"] = secrets.token_urlsafe(32)  # this run's sessions only
    with local_stack(
        settings,
        run_dir,
        time_scale=options.time_scale,
        seed=options.seed,
        faults=options.faults,
        worker_concurrency=options.worker_concurrency,
        extra_env=extra_env,
    ) as stack:
        imported, account = create_demo_campaign(
            options, settings.database_url, settings.data_dir, stack.sim_url, stack.api_url
        )
        httpx.post(
            f"{stack.sim_url}/_sim/config", json={"keypress_weights": DEMO_KEYPRESSES}, timeout=5.0
        ).raise_for_status()
        with transaction(settings.database_url) as session:
            lifecycle.start(session, account.id, imported.campaign_id, actor=cli_actor())
        stack.kick_pacer(account.id)
        console.print(
            f"Metrics: {stack.api_url}/metrics (API), {stack.worker_metrics_url} (worker)",
            soft_wrap=True,
        )
        page: dict[str, str] = {}
        if options.serve:
            page = _page(settings.database_url, account, stack.api_url, imported.campaign_id)
            _print_lines(console, _page_lines(page))
        report = _watch(options, settings.database_url, account.id, imported.campaign_id, console)
        stats = httpx.get(f"{stack.sim_url}/_sim/stats", timeout=5.0).json()
        result = _result(options, imported, account, report, stats, started, run_dir) | page
        if not options.as_json:
            console.print(report_table(report))
            _print_summary(result, console)
        if options.serve:
            _serve_until_interrupted(result, console)
        elif not options.as_json:
            _print_lines(console, [PAGE_HINT])
    return result


def _result(
    options: DemoOptions,
    imported: lifecycle.ImportedCampaign,
    account: DemoAccount,
    report: dict[str, Any],
    stats: dict[str, Any],
    started: float,
    run_dir: Path,
) -> dict[str, Any]:
    summary = imported.summary.to_json()
    return {
        "campaign_id": imported.campaign_id,
        "account": account.name,
        "rows": summary["rows"],
        "accepted": summary["accepted"],
        "rejected": summary["rejected"],
        "outcomes": report["outcomes"],
        "calls_placed": report["attempts"]["calls_placed"],
        "answer_rate": report["rates"]["answer_rate"],
        "opt_outs": report["attempts"]["opt_outs"],
        "pool_cap": options.max_concurrency,
        "max_concurrent_observed": stats["max_concurrent"],
        "max_dials_per_number": stats["max_dials_per_number"],
        "calls_by_caller_id": {n["number"]: n["calls"] for n in report["numbers"]},
        "elapsed_s": round(time.monotonic() - started, 2),
        "report_command": report_command(imported.campaign_id, account.name),
        "logs": str(run_dir.resolve()),
    }


def _page(
    database_url: str, account: DemoAccount, api_url: str, campaign_id: int
) -> dict[str, str]:
    """The campaign page's URL and a new API key of the demo's account to sign in with."""
    with transaction(database_url) as session:
        row = get_account(session, account.name)
        key = create_api_key(session, row, "demo page").key
    return {"page": f"{api_url}/campaigns/{campaign_id}", "api_key": key}


def _serve_until_interrupted(result: dict[str, Any], console: Console) -> None:
    """Keep the stack up until Ctrl-C (returns); SIGHUP or SIGTERM raise `StackStopped`."""
    _print_lines(
        console,
        [*_page_lines(result), "The simulator, API, worker and beat stay up until Ctrl-C."],
    )
    try:
        while True:
            time.sleep(3600)
    except StackStopped:
        raise
    except KeyboardInterrupt:
        console.print("Stopping.", highlight=False)


def _page_lines(page: dict[str, Any]) -> list[str]:
    return [f"Campaign page: {page['page']}", f"Sign in with the key: {page['api_key']}"]


def _print_lines(console: Console, lines: list[str]) -> None:
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def report_command(campaign_id: int, account: str) -> str:
    """The command that prints campaign `campaign_id` of `account`'s report."""
    return f"dialer campaigns report {campaign_id} --account {shlex.quote(account)}"


def _print_summary(result: dict[str, Any], console: Console) -> None:
    rate = result["answer_rate"]
    answered = "—" if rate is None else f"{rate:.1%}"
    lines = [
        f"CSV rows: {result['rows']} ({result['accepted']} accepted as contacts, "
        f"{sum(result['rejected'].values())} rejected)",
        f"Calls placed: {result['calls_placed']}; answer rate {answered} of calls placed",
        f"Opt-outs (pressed 9, now on the account's do-not-call list): {result['opt_outs']}",
        f"Most calls live at once (simulator): {result['max_concurrent_observed']} "
        f"(pool cap {result['pool_cap']}); most dials of one number: "
        f"{result['max_dials_per_number']}",
        "Calls by caller ID: "
        + ", ".join(f"{number} {calls}" for number, calls in result["calls_by_caller_id"].items()),
        f"Finished in {result['elapsed_s']} s",
        f"Account: {result['account']}",
        f"Report: {result['report_command']}",
        f"Logs: {result['logs']} (simulator.log, api.log, worker.log, beat.log)",
    ]
    _print_lines(console, lines)


def create_demo_campaign(
    options: DemoOptions, database_url: str, data_dir: Path, sim_url: str, api_url: str
) -> tuple[lifecycle.ImportedCampaign, DemoAccount]:
    """A fresh demo account (caps from `options`) and its campaign of the demo's contacts,
    imported, not started; the pool's numbers are added through the API at `api_url`, owned
    by the simulator at `sim_url`."""
    with transaction(database_url) as session:
        account = create_account(
            session,
            f"demo-{int(time.time() * 1000)}",
            max_concurrency=options.max_concurrency,
            cps=options.cps,
            simulator=True,  # the demo's own simulator owns the magic test number
        )
        created = DemoAccount(account.id, account.name)
        key = create_api_key(session, account, "demo numbers").key
    _add_pool_numbers(sim_url, api_url, key)
    if options.contacts:
        source = generated_contacts(options.contacts)
    elif options.csv:
        source = options.csv.read_bytes()
    else:
        source = in_daytime(sample_csv())
    campaign_options = lifecycle.CampaignOptions(
        name="demo: appointment reminders",
        message=DEMO_MESSAGE,
        menu=DEMO_MENU,
        max_concurrency=options.max_concurrency,
        max_attempts=options.max_attempts,
        caller_id_pool=DEMO_POOL,
    )
    imported = lifecycle.import_campaign(
        database_url, data_dir, created.id, campaign_options, io.BytesIO(source)
    )
    return imported, created


def _add_pool_numbers(sim_url: str, api_url: str, key: str) -> None:
    """Have the demo's simulator own `DEMO_POOL` and add its numbers to the account the way
    an operator does (`POST /v1/numbers`: the provider is asked whether it owns each)."""
    config = {"owned_numbers": DEMO_POOL}
    httpx.post(f"{sim_url}/_sim/config", json=config, timeout=5.0).raise_for_status()
    for number in DEMO_POOL[1:]:
        added = httpx.post(
            f"{api_url}/v1/numbers",
            json={"number": number},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10.0,
        )
        added.raise_for_status()


def _watch(
    options: DemoOptions, database_url: str, account_id: int, campaign_id: int, console: Console
) -> dict[str, Any]:
    """Poll the report until every contact is final; show progress on a terminal unless
    `--json`. The progress is erased at the end (and a pipe gets none), so the caller
    prints the final table once."""
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        while True:
            with transaction(database_url) as session:
                report = campaign_report(
                    session, get_runtime().pool, account_id, campaign_id
                ).model_dump(mode="json")
            if not options.as_json:
                live.update(report_table(report))
            if report["finished"]:
                return report
            time.sleep(0.5)
