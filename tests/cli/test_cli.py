"""The `dialer` command line as a user runs it: `python -m dialer ...` in a subprocess,
against this test process's database (DATABASE_URL) and Redis database (REDIS_URL), with
DATA_DIR in the test's temporary directory.

A failing command must exit non-zero and print exactly one line, `error: <code>: <message>`,
on stderr (docs/concepts/tenants.md); these tests hold every command to that contract.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import redis
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.core import TyperGroup

from campaigns.accounts import create_account, hash_api_key
from campaigns.options import OperatorOptions
from campaigns.reports import ATTEMPT_COLUMNS
from dialer.cli import app as cli_app
from dialer.numbers import RejectReason
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.web.app import create_app
from models import (
    Account,
    ApiKey,
    CallerId,
    Campaign,
    CampaignStatus,
    DncEntry,
    MachineAction,
    engine_for,
)
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CSV = REPO / "campaigns" / "samples" / "appointments.csv"
SAMPLE_ROWS = 40
MESSAGE = "Hi {first_name}, see you {appointment_time}."
ERROR_LINE = re.compile(r"error: (?P<code>[a-z_]+): (?P<message>\S.*)")
CLI_TIMEOUT_S = 60


@dataclass(frozen=True)
class Cli:
    """Runs `python -m dialer` the way a user's shell would, and checks its contract."""

    env: dict[str, str]
    cwd: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dialer", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str) -> str:
        """Stdout of a command that must succeed."""
        result = self.run(*args)
        assert result.returncode == 0, (
            f"`dialer {' '.join(args)}` exited {result.returncode}:\n{result.stderr}"
        )
        return result.stdout

    def json(self, *args: str) -> Any:
        """The one JSON line a `--json` command prints."""
        lines = self.ok(*args).splitlines()
        assert len(lines) == 1, f"`dialer {' '.join(args)}` printed {len(lines)} lines: {lines}"
        return json.loads(lines[0])

    def error(self, *args: str) -> tuple[str, str]:
        """The code and message of a command that must fail with one
        `error: <code>: <message>` line on stderr and a non-zero exit status."""
        result = self.run(*args)
        command = f"`dialer {' '.join(args)}`"
        assert "Traceback" not in result.stderr, (
            f"CLI bug: {command} crashed with an uncaught exception instead of printing "
            f"`error: <code>: <message>`:\n{result.stderr}"
        )
        assert result.returncode != 0, f"{command} exited 0; stdout: {result.stdout!r}"
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (
            f"{command} must print exactly one error line on stderr, got {len(lines)}: {lines}"
        )
        match = ERROR_LINE.fullmatch(lines[0])
        assert match, f"{command}: not an `error: <code>: <message>` line: {lines[0]!r}"
        return match["code"], match["message"]

    def fails(self, *args: str, code: str) -> str:
        """The message of a command that must fail with `error: <code>: <message>`."""
        actual, message = self.error(*args)
        assert actual == code, f"`dialer {' '.join(args)}`: expected {code}, got {actual}"
        return message

    def create(self, *extra: str, name: str = "Reminders") -> Any:
        """`campaigns create ... --json` with the sample CSV and a message it can fill."""
        return self.json(
            "campaigns",
            "create",
            "--name",
            name,
            "--csv",
            str(SAMPLE_CSV),
            "--message",
            MESSAGE,
            "--json",
            *extra,
        )

    def campaigns(self, *extra: str) -> list[dict[str, Any]]:
        listed = self.json("campaigns", "list", "--json", *extra)
        assert isinstance(listed, list)
        return listed


@pytest.fixture
def cli(committed_db: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Cli]:
    """The CLI against the committed test database; `redis_client` empties the Redis
    database that `campaigns start` enqueues the pacer task on."""
    env = dict(os.environ)
    env["DATABASE_URL"] = committed_db
    env["DATA_DIR"] = str(tmp_path / "data")
    # Rich wraps at the terminal width; pin it so the result does not depend on who runs us.
    env["COLUMNS"] = "80"
    work = tmp_path / "cwd"  # no stray `.env` is read, nothing is written into the repo
    work.mkdir()
    with Session(engine_for(committed_db)) as session, session.begin():
        create_account(session, "default", simulator=True)
        create_account(session, "other", simulator=True)
    yield Cli(env=env, cwd=work)


def _account(database_url: str, name: str) -> Account | None:
    with Session(engine_for(database_url), expire_on_commit=False) as session:
        return session.scalars(select(Account).where(Account.name == name)).one_or_none()


def test_db_upgrade_migrates(cli: Cli) -> None:
    assert cli.ok("db", "upgrade").strip() == "database migrated"


def test_create_prints_the_ingest_summary_as_one_json_line(
    cli: Cli, committed_db: str, tmp_path: Path
) -> None:
    created = cli.create()

    assert {"campaign_id", "rows", "accepted", "rejected", "rejected_csv"} <= created.keys()
    assert isinstance(created["campaign_id"], int)
    assert created["rows"] == SAMPLE_ROWS
    assert created["rows"] == created["accepted"] + sum(created["rejected"].values())
    assert created["accepted"] > 0
    # The sample holds a duplicate, a short code, a national number without area code and
    # a row without a number.
    assert created["rejected"] == {
        "duplicate": 1,
        "emergency_or_short_code": 1,
        "invalid_number": 1,
        "missing_number": 1,
    }
    rejected_csv = Path(created["rejected_csv"])
    assert rejected_csv.is_file()
    assert rejected_csv.is_relative_to(tmp_path / "data")
    with rejected_csv.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == sum(created["rejected"].values())
    assert all(row["line"].isdigit() and row["reason"] for row in rows)
    assert sorted(row["reason"] for row in rows) == sorted(created["rejected"])


@pytest.mark.parametrize(
    ("content", "code"),
    [
        pytest.param(b"", "empty_file", id="empty"),
        pytest.param(b"name,city\nAda,London\nGrace,Arlington\n", "no_phone_column", id="no-phone"),
    ],
)
def test_a_file_level_error_creates_nothing(
    cli: Cli, tmp_path: Path, content: bytes, code: str
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(content)

    message = cli.fails(
        "campaigns", "create", "--name", "Bad", "--csv", str(path), "--message", MESSAGE, code=code
    )

    assert message
    assert cli.campaigns() == []


def test_settings_reach_the_campaign(cli: Cli, committed_db: str) -> None:
    cli.ok("accounts", "set", "default", "--cps", "5")  # a campaign's CPS is at most its account's
    created = cli.create(
        "--max-hold-s",
        "45",
        "--machine-detection",
        "--machine-action",
        "leave_message",
        "--gather-dtmf",
        "--cps",
        "2.5",
        "--priority",
        "5",
    )

    with Session(engine_for(committed_db)) as session:
        campaign = session.get_one(Campaign, created["campaign_id"])
        assert campaign.max_hold_s == 45
        assert campaign.machine_detection is True
        assert campaign.machine_action is MachineAction.LEAVE_MESSAGE
        assert campaign.menu is not None
        assert {key: entry["action"] for key, entry in campaign.menu["digits"].items()} == {
            "1": "confirm",
            "2": "cancel",
            "9": "opt_out",
        }
        assert campaign.cps == 2.5
        assert campaign.priority == 5


def test_window_settings_and_preview(cli: Cli, committed_db: str) -> None:
    created = cli.create(
        "--window",
        "10:00-18:00",
        "--days",
        "mon,wed,fri",
        "--holiday",
        "2027-12-24",
        "--holiday",
        "2027-12-31",
        "--skip-public-holidays",
        "--timezone",
        "Europe/London",
        "--start-at",
        "2027-06-01T09:00:00",
        "--end-at",
        "2027-06-30T18:00:00+01:00",
    )
    with Session(engine_for(committed_db)) as session:
        campaign = session.get_one(Campaign, created["campaign_id"])
        assert campaign.window_days == [0, 2, 4]
        assert [d.isoformat() for d in campaign.holidays] == ["2027-12-24", "2027-12-31"]
        assert campaign.skip_public_holidays is True
        assert campaign.start_at is not None and campaign.start_at.isoformat().startswith(
            "2027-06-01T08:00:00"
        )
    preview = cli.json("campaigns", "preview", str(created["campaign_id"]), "--json")
    assert preview["pending"] == created["accepted"]
    assert preview["callable_now"] == 0  # nothing before start_at
    assert preview["estimated_finish_at"] is not None
    assert "callable now" in cli.ok("campaigns", "preview", str(created["campaign_id"]))
    message = cli.fails(
        "campaigns",
        "create",
        "--name",
        "Night",
        "--csv",
        str(SAMPLE_CSV),
        "--window",
        "06:00-23:00",
        code="window_outside_legal_hours",
    )
    assert "08:00-21:00" in message


def test_a_setting_out_of_bounds_is_invalid_option(cli: Cli) -> None:
    message = cli.fails(
        "campaigns",
        "create",
        "--name",
        "Bad",
        "--csv",
        str(SAMPLE_CSV),
        "--message",
        MESSAGE,
        "--max-hold-s",
        "0",
        code="invalid_option",
    )

    assert "max_hold_s" in message
    assert cli.campaigns() == []


def test_the_cli_and_the_api_take_the_same_campaign_settings() -> None:
    """Both are built from `OperatorOptions`: a setting exists in both or in neither."""
    group = typer.main.get_command(cli_app)
    assert isinstance(group, TyperGroup)
    campaigns = group.commands["campaigns"]
    assert isinstance(campaigns, TyperGroup)
    create = campaigns.commands["create"]
    cli_settings = {param.name for param in create.params} - {"csv", "account", "as_json"}

    document = create_app(Runtime(Settings())).openapi()
    schemas = document["components"]["schemas"]
    body = document["paths"]["/v1/campaigns"]["post"]["requestBody"]["content"]
    api_settings = _properties(schemas, body["multipart/form-data"]["schema"]) - {"file"}

    assert cli_settings == api_settings == set(OperatorOptions.model_fields)
    flags = {param.name: param.opts for param in create.params}
    assert flags["max_hold_s"] == ["--max-hold-s"]
    assert flags["from_number"] == ["--from"]
    assert flags["machine_action"] == ["--machine-action"]


def _properties(schemas: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The property names of an OpenAPI schema, through `$ref` and `allOf`."""
    if "$ref" in schema:
        return _properties(schemas, schemas[schema["$ref"].rsplit("/", 1)[1]])
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= _properties(schemas, part)
    return names


def test_a_placeholder_without_a_column_creates_nothing(cli: Cli) -> None:
    message = cli.fails(
        "campaigns",
        "create",
        "--name",
        "Nick",
        "--csv",
        str(SAMPLE_CSV),
        "--message",
        "Hi {nickname}",
        code="missing_variable",
    )

    assert "nickname" in message
    assert cli.campaigns() == []


def test_lifecycle_report_and_list(cli: Cli) -> None:
    created = cli.create(name="Clinic reminders")
    campaign = str(created["campaign_id"])

    draft = cli.json("campaigns", "report", campaign, "--json", "--minutes", "3")
    assert {
        "campaign_id",
        "status",
        "contacts",
        "outcomes",
        "rates",
        "attempts",
        "talk_time",
        "series",
        "pacing",
        "breaker",
        "eta",
        "finished",
    } <= draft.keys()
    assert draft["campaign_id"] == created["campaign_id"]
    assert draft["status"] == "draft"
    assert draft["contacts"]["total"] == created["accepted"]
    # Due now or at their window's next opening, by the time of day in their zones.
    waiting = draft["contacts"]["pending"] + draft["contacts"]["waiting_for_window"]
    assert waiting == created["accepted"]
    assert draft["outcomes"]["answered"] == 0
    assert draft["attempts"]["calls_placed"] == 0
    assert len(draft["series"]) == 3
    assert draft["finished"] is False
    table = cli.ok("campaigns", "report", campaign)
    assert "Clinic reminders" in table
    [contacts] = [line for line in table.splitlines() if "│ contacts " in line]
    assert contacts.split("│")[2].strip() == str(created["accepted"])
    # Watching a campaign that does not finish: one refresh per interval, then it stops.
    watched = cli.ok("campaigns", "watch", campaign, "--iterations", "2", "--interval", "0.1")
    assert "Clinic reminders" in watched and "estimated finish" in watched
    assert "finished" not in watched.splitlines()[-1]

    assert "draft" in cli.fails("campaigns", "resume", campaign, code="invalid_state")
    assert cli.ok("campaigns", "start", campaign).strip() == f"campaign {campaign}: running"
    assert cli.ok("campaigns", "pause", campaign).strip() == f"campaign {campaign}: paused"
    assert cli.ok("campaigns", "resume", campaign).strip() == f"campaign {campaign}: running"
    assert cli.ok("campaigns", "cancel", campaign).strip() == f"campaign {campaign}: canceled"
    cli.fails("campaigns", "start", campaign, code="invalid_state")

    canceled = cli.json("campaigns", "report", campaign, "--json")
    assert canceled["status"] == "canceled"
    assert canceled["finished"] is True
    assert canceled["contacts"]["pending"] == 0
    assert canceled["contacts"]["cancelled"] == canceled["contacts"]["total"]
    assert canceled["contacts"]["total"] == created["accepted"]
    # A finished campaign: watch shows it once and says so.
    watched = cli.ok("campaigns", "watch", campaign, "--interval", "0.1")
    assert watched.splitlines()[-1] == f"campaign {campaign}: finished (canceled)"

    [listed] = cli.campaigns()
    assert listed["id"] == created["campaign_id"]
    assert listed["name"] == "Clinic reminders"
    assert listed["status"] == "canceled"
    assert listed["created_at"]


def test_exports_per_contact_and_per_attempt(cli: Cli, tmp_path: Path) -> None:
    created = cli.create()
    campaign = str(created["campaign_id"])
    rows = list(csv.reader(io.StringIO(cli.ok("campaigns", "export", campaign))))
    assert rows[0][:2] == ["line", "phone"]
    assert len(rows) == 1 + created["accepted"]
    assert all(re.fullmatch(r"\+[1-9][0-9]+", row[1]) for row in rows[1:])  # E.164 as is
    out = tmp_path / "attempts.csv"
    said = cli.ok("campaigns", "export", campaign, "--attempts", "--out", str(out))
    assert said.strip() == f"0 attempts written to {out}"
    assert out.read_text().splitlines() == [",".join(ATTEMPT_COLUMNS)]
    book = tmp_path / "results.xlsx"
    said = cli.ok("campaigns", "export", campaign, "--xlsx", "--out", str(book))
    assert said.strip() == f"{created['accepted']} contacts written to {book}"
    sheet = openpyxl.load_workbook(book).active
    assert [row[1] for row in sheet.iter_rows(values_only=True)] == [row[1] for row in rows]
    cli.fails("campaigns", "export", campaign, "--account", "other", code="campaign_not_found")


def test_unknown_ids_and_other_accounts_are_not_found(cli: Cli, committed_db: str) -> None:
    campaign = str(cli.create()["campaign_id"])

    cli.fails("campaigns", "pause", "999999", code="campaign_not_found")
    cli.fails("campaigns", "report", campaign, "--account", "other", code="campaign_not_found")
    cli.fails("campaigns", "cancel", campaign, "--account", "other", code="campaign_not_found")
    assert cli.campaigns("--account", "other") == []
    with Session(engine_for(committed_db)) as session:
        assert session.scalars(select(Campaign.status)).one() is CampaignStatus.DRAFT


@pytest.mark.parametrize(
    "command",
    [
        ["campaigns", "list"],
        ["campaigns", "report", "1"],
        ["campaigns", "start", "1"],
        ["campaigns", "create", "--name", "x", "--csv", str(SAMPLE_CSV), "--message", MESSAGE],
        ["dnc", "add", "+12125550143"],
        ["dnc", "import", str(SAMPLE_CSV)],
        ["numbers", "list"],
        ["numbers", "add", "+15005550006"],
        ["keys", "create", "--name", "ci"],
        ["keys", "list"],
        ["calls", "list"],
        ["calls", "place", "--to", "+447386172392", "--message", "Hi"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_no_command_creates_an_account(cli: Cli, committed_db: str, command: list[str]) -> None:
    cli.fails(*command, "--account", "typo", code="account_not_found")
    assert _account(committed_db, "typo") is None


def test_an_unknown_account_says_how_to_create_it_or_name_another(cli: Cli) -> None:
    cli.env["DIALER_ACCOUNT"] = "clinic"
    message = cli.fails("campaigns", "list", code="account_not_found")
    assert "dialer accounts create clinic" in message
    assert "--account" in message and "DIALER_ACCOUNT" in message
    # DIALER_ACCOUNT names the account when --account does not; --account wins.
    cli.ok("accounts", "create", "clinic")
    cli.create(name="Clinic reminders")
    assert [c["name"] for c in cli.campaigns()] == ["Clinic reminders"]
    assert cli.campaigns("--account", "default") == []


def test_cli_times_are_iso_8601(cli: Cli) -> None:
    cli.create()
    [listed] = cli.campaigns()
    created = datetime.fromisoformat(listed["created_at"])
    assert created.tzinfo is not None and "T" in listed["created_at"]
    shown = cli.ok("accounts", "show", "default")
    assert "datetime" not in shown
    [line] = [line for line in shown.splitlines() if line.startswith("created_at: ")]
    assert datetime.fromisoformat(line.removeprefix("created_at: ")).tzinfo is not None
    [numbers] = [line for line in shown.splitlines() if line.startswith("numbers: ")]
    assert json.loads(numbers.removeprefix("numbers: "))[0]["number"] == "+15005550006"


def test_dnc_add_and_import(cli: Cli, committed_db: str, tmp_path: Path) -> None:
    assert cli.ok("dnc", "add", "+12125550143").strip() == "1 added"
    path = tmp_path / "dnc.csv"
    path.write_text("phone\n(212) 555-0143\n212-555-0100\nnot a number\n", encoding="utf-8")

    summary = cli.json("dnc", "import", str(path), "--json")

    assert summary == {"rows": 3, "added": 1, "already": 1, "invalid": 1}
    with Session(engine_for(committed_db)) as session:
        listed = set(session.scalars(select(DncEntry.e164)))
    assert listed == {"+12125550143", "+12125550100"}


def test_dnc_add_refuses_an_invalid_number(cli: Cli, committed_db: str) -> None:
    code, _ = cli.error("dnc", "add", "911")

    assert code in {reason.value for reason in RejectReason}
    with Session(engine_for(committed_db)) as session:
        assert list(session.scalars(select(DncEntry.e164))) == []


def test_accounts_create_set_show(cli: Cli, committed_db: str) -> None:
    assert cli.ok("accounts", "create", "clinic", "--cps", "2").strip() == "account clinic created"
    cli.fails("accounts", "create", "clinic", code="account_exists")
    shown = cli.json("accounts", "show", "clinic", "--json")
    assert shown["name"] == "clinic"
    assert (shown["max_concurrency"], shown["cps"], shown["frequency_caps"]) == (
        10,
        2.0,
        [{"calls": 3, "days": 1}],
    )
    assert shown["webhook_url"] is None
    # With the simulator as provider the first caller ID is Twilio's magic test number.
    assert [n["number"] for n in shown["numbers"]] == ["+15005550006"]

    cli.env["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "false"
    cli.fails(
        "accounts",
        "set",
        "clinic",
        "--webhook-url",
        "http://127.0.0.1:6379/",
        code="webhook_url_not_allowed",
    )
    cli.fails("accounts", "set", "clinic", "--max-concurrency", "0", code="invalid_option")
    cli.env["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"  # no DNS on test machines
    cli.ok(
        "accounts",
        "set",
        "clinic",
        "--max-concurrency",
        "25",
        "--cps",
        "5",
        "--frequency-cap",
        "3/30",
        "--frequency-cap",
        "1/1",
        "--webhook-url",
        "http://127.0.0.1:9000/hooks",
    )
    shown = cli.json("accounts", "show", "clinic", "--json")
    assert (shown["max_concurrency"], shown["cps"], shown["frequency_caps"]) == (
        25,
        5.0,
        [{"calls": 1, "days": 1}, {"calls": 3, "days": 30}],
    )
    assert shown["webhook_url"] == "http://127.0.0.1:9000/hooks"
    assert shown["rest_flagged_numbers"] is False
    cli.ok("accounts", "set", "clinic", "--rest-flagged-numbers")
    assert cli.json("accounts", "show", "clinic", "--json")["rest_flagged_numbers"] is True
    for bad in ("3", "0/1", "1/400", "x/y"):
        cli.fails("accounts", "set", "clinic", "--frequency-cap", bad, code="invalid_option")
    cli.fails(
        "accounts", "set", "clinic", "--frequency-cap", "1/7", "--frequency-cap", "2/7",
        code="invalid_option",
    )  # fmt: skip
    cli.ok("accounts", "set", "clinic", "--no-frequency-caps")
    assert cli.json("accounts", "show", "clinic", "--json")["frequency_caps"] == []
    cli.fails("accounts", "show", "nobody", code="account_not_found")
    cli.fails("accounts", "set", "nobody", "--cps", "2", code="account_not_found")


def test_the_operator_sets_an_accounts_ceilings(cli: Cli) -> None:
    cli.ok("accounts", "create", "clinic")
    shown = cli.json("accounts", "show", "clinic", "--json")
    assert (shown["max_concurrency_ceiling"], shown["cps_ceiling"]) == (100, 10.0)
    cli.fails("accounts", "set", "clinic", "--max-concurrency", "150", code="above_ceiling")
    cli.ok(
        "accounts",
        "set",
        "clinic",
        "--max-concurrency-ceiling",
        "200",
        "--cps-ceiling",
        "30",
        "--max-concurrency",
        "150",
        "--cps",
        "25",
    )
    shown = cli.json("accounts", "show", "clinic", "--json")
    assert (shown["max_concurrency"], shown["max_concurrency_ceiling"]) == (150, 200)
    assert (shown["cps"], shown["cps_ceiling"]) == (25.0, 30.0)
    # A ceiling lowered below a cap lowers the cap.
    cli.ok("accounts", "set", "clinic", "--cps-ceiling", "3")
    shown = cli.json("accounts", "show", "clinic", "--json")
    assert (shown["cps"], shown["cps_ceiling"]) == (3.0, 3.0)
    cli.fails("accounts", "set", "clinic", "--cps-ceiling", "0", code="invalid_option")


def test_numbers_add_refuses_another_accounts_number(cli: Cli, committed_db: str) -> None:
    with Session(engine_for(committed_db)) as session, session.begin():
        owner = session.scalars(select(Account).where(Account.name == "default")).one()
        session.add(CallerId(account_id=owner.id, e164="+14155550101"))
    cli.fails("numbers", "add", "+14155550101", "--account", "other", code="number_taken")
    assert [n["number"] for n in cli.json("numbers", "list", "--account", "other", "--json")] == [
        "+15005550006"
    ]


def test_keys_create_list_revoke(cli: Cli, committed_db: str) -> None:
    plain = cli.ok("keys", "create", "--account", "default", "--name", "crm").splitlines()
    assert len(plain) == 1 and plain[0].startswith("dk_") and len(plain[0]) > 40
    issued = cli.json("keys", "create", "--account", "other", "--name", "billing", "--json")
    assert set(issued) == {"id", "name", "key"}
    assert issued["name"] == "billing" and issued["key"].startswith("dk_")
    with Session(engine_for(committed_db)) as session:
        stored = session.scalars(select(ApiKey).order_by(ApiKey.id)).all()
        assert [k.key_hash for k in stored] == [hash_api_key(plain[0]), hash_api_key(issued["key"])]

    listed = cli.json("keys", "list", "--json")
    assert [(k["account"], k["name"]) for k in listed] == [("default", "crm"), ("other", "billing")]
    assert all(plain[0] not in str(k) and issued["key"] not in str(k) for k in listed)
    assert listed[0]["prefix"] == plain[0][:10]
    only = cli.json("keys", "list", "--account", "other", "--json")
    assert [k["id"] for k in only] == [issued["id"]]

    assert cli.ok("keys", "revoke", str(issued["id"])).strip().endswith("revoked")
    [revoked] = cli.json("keys", "list", "--account", "other", "--json")
    assert revoked["revoked_at"]
    cli.fails("keys", "revoke", "999999", code="api_key_not_found")


def test_numbers_add_list_remove(cli: Cli, committed_db: str) -> None:
    # The magic number is the simulator's and the account's already: this only updates it.
    assert cli.ok("numbers", "add", "+15005550006", "--max-concurrency", "2").split() == [
        "+15005550006",
        "updated",
    ]
    [number] = cli.json("numbers", "list", "--json")
    assert (number["number"], number["outbound"], number["max_concurrency"]) == (
        "+15005550006",
        True,
        2,
    )
    # The per-number limits and the rest; a table without --json.
    cli.ok(
        "numbers", "add", "+15005550006", "--max-calls-per-minute", "5", "--max-calls-per-day",
        "50", "--rest",
    )  # fmt: skip
    [number] = cli.json("numbers", "list", "--json")
    assert (number["max_calls_per_minute"], number["max_calls_per_day"]) == (5, 50)
    assert number["rested_reason"].startswith("rested by cli:")
    assert "cli:" in cli.ok("numbers", "list")  # the rested column (wrapped at 80)
    cli.ok("numbers", "add", "+15005550006", "--no-max-calls-per-day", "--unrest")
    [number] = cli.json("numbers", "list", "--json")
    assert (number["max_calls_per_minute"], number["max_calls_per_day"]) == (5, None)
    assert number["rested_at"] is None
    cli.fails(
        "numbers", "add", "+15005550006", "--max-calls-per-day", "5", "--no-max-calls-per-day",
        code="invalid_option",
    )  # fmt: skip
    cli.ok("numbers", "add", "+15005550006", "--no-outbound")
    [number] = cli.json("numbers", "list", "--json")
    assert (number["outbound"], number["max_concurrency"]) == (False, 2)  # the cap is kept
    cli.fails("numbers", "add", "07386172392", code="invalid_phone_format")
    cli.fails("numbers", "remove", "+14155550100", code="number_not_found")
    # No outbound number left: a campaign cannot be created.
    cli.fails(
        "campaigns",
        "create",
        "--name",
        "x",
        "--csv",
        str(SAMPLE_CSV),
        "--message",
        MESSAGE,
        code="no_outbound_number",
    )
    assert cli.ok("numbers", "remove", "+15005550006").strip() == "removed"
    assert cli.json("numbers", "list", "--json") == []


def test_calls_place_show_list(cli: Cli) -> None:
    placed = cli.json(
        "calls",
        "place",
        "--to",
        "+447386172392",
        "--message",
        "Hi {name}.",
        "--var",
        "name=Ada",
        "--meta",
        "order=A-17",
        "--amd",
        "detect",
        "--json",
    )
    assert (placed["status"], placed["to"], placed["from"]) == (
        "queued",
        "+447386172392",
        "+15005550006",
    )
    assert placed["metadata"] == {"order": "A-17"}
    shown = cli.json("calls", "show", str(placed["call_id"]), "--json")
    assert shown["call_id"] == placed["call_id"]
    listed = cli.json("calls", "list", "--status", "queued", "--json")
    assert [c["call_id"] for c in listed["items"]] == [placed["call_id"]]
    assert listed["next_cursor"] is None
    cli.fails("calls", "show", str(placed["call_id"]), "--account", "other", code="call_not_found")
    cli.fails(
        "calls", "place", "--to", "07386172392", "--message", "Hi", code="invalid_phone_format"
    )
    cli.fails("calls", "place", "--to", "+447386172392", code="missing_field")


@pytest.mark.parametrize(
    "bad",
    [
        ["--max-hold-seconds", "0"],
        ["--ring-timeout", "4"],
        ["--ring-timeout", "601"],
        ["--time-limit", "0"],
        ["--meta", "note=" + "x" * 4100],
    ],
    ids=lambda bad: f"{bad[0]}={bad[1][:6]}",
)
def test_calls_place_applies_the_apis_bounds(cli: Cli, bad: list[str]) -> None:
    """Issue 20 item 12: `calls place --max-hold-seconds 0` hung up on answer; the CLI
    builds the API's single-call schema, with its bounds."""
    message = cli.fails(
        "calls", "place", "--to", "+447386172392", "--message", "Hi", *bad, code="invalid_option"
    )
    assert bad[0].removeprefix("--").replace("-", "_").replace("meta", "metadata") in message
    assert cli.json("calls", "list", "--json")["items"] == []


def test_campaign_files_as_people_export_them(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Phone,First Name,Appt Date\n+12125550143,Ada,Monday 9:30\n", encoding="utf-8")
    message = "Hi {first_name}, see you {appointment_time}."
    base = ["campaigns", "create", "--name", "x", "--csv", str(path)]
    cli.fails(*base, code="missing_field")
    refused = cli.fails(*base, "--message", message, code="missing_variable")
    assert refused.endswith("did you mean Appt Date?")
    created = cli.json(*base, "--message", message, "--map", "Appt Date=appointment_time", "--json")
    assert created["accepted"] == 1


def test_flower_refuses_to_start_without_a_password(cli: Cli) -> None:
    cli.env["FLOWER_PASSWORD"] = ""
    cli.fails("flower", code="flower_password_unset")


def test_flower_refuses_a_placeholder_password(cli: Cli) -> None:
    cli.env["FLOWER_PASSWORD"] = "changeme"
    message = cli.fails("flower", code="invalid_settings")
    assert "FLOWER_PASSWORD is a placeholder" in message


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as in /proc/net/tcp and tcp6) listening on `port`."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_flower_listens_on_this_machine_only_by_default(cli: Cli) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**cli.env, "FLOWER_PASSWORD": "k3-flower-9x-test"}
    flower = subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "dialer", "flower", "--port", str(port)],
        env=env,
        cwd=cli.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: bool(_listening(port)), 30.0, "Flower to listen")
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, not every interface
    finally:
        flower.terminate()
        flower.wait(timeout=10)


def test_demo_refuses_an_unknown_fault_before_starting_anything(cli: Cli) -> None:
    message = cli.fails("demo", "--fault", "nonsense=2", "--json", code="invalid_fault")
    assert "502-after" in message  # it lists the faults it knows


def test_demo_refuses_chaos_without_hosts_to_cut_before_starting_anything(cli: Cli) -> None:
    for args in (
        ("--chaos",),
        ("--hosts", "3"),
        ("--hosts", "3", "--chaos", "--broker", "kafka"),
        ("--broker", "rabbitmq"),
        ("--hosts", "3", "--chaos", "--serve"),
    ):
        cli.fails("demo", *args, "--json", code="invalid_demo_options")


def test_simulator_help_names_every_fault(cli: Cli) -> None:
    from dialer.simulator import Fault

    cli.env["COLUMNS"] = "400"
    help_text = " ".join(cli.ok("simulator", "--help").split())
    for fault in Fault:
        assert fault.value in help_text, fault
