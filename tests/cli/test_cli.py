"""The `dialer` command line as a user runs it: `python -m dialer ...` in a subprocess,
against this test process's database (DATABASE_URL) and Redis database (REDIS_URL), with
DATA_DIR in the test's temporary directory.

A failing command must exit non-zero and print exactly one line, `error: <code>: <message>`,
on stderr (README, "CLI"); these tests hold every command to that contract.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import redis
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.core import TyperGroup

from campaigns.accounts import hash_api_key
from campaigns.options import OperatorOptions
from campaigns.reports import ATTEMPT_COLUMNS
from dialer.cli import app as cli_app
from dialer.numbers import RejectReason
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.web.app import create_app
from models import Account, Campaign, CampaignStatus, DncEntry, MachineAction, engine_for

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
    yield Cli(env=env, cwd=work)


def _account(database_url: str, name: str) -> Account | None:
    with Session(engine_for(database_url), expire_on_commit=False) as session:
        return session.scalars(select(Account).where(Account.name == name)).one_or_none()


def test_db_upgrade_migrates(cli: Cli) -> None:
    assert cli.ok("db", "upgrade").strip() == "database migrated"


def test_create_prints_the_ingest_summary_as_one_json_line(
    cli: Cli, committed_db: str, tmp_path: Path
) -> None:
    assert _account(committed_db, "default") is None

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

    account = _account(committed_db, "default")
    assert account is not None, "the `default` account is created on first use"


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

    message = cli.fails("campaigns", "create", "--name", "Bad", "--csv", str(path), code=code)

    assert message
    assert cli.campaigns() == []


def test_settings_reach_the_campaign(cli: Cli, committed_db: str) -> None:
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
        assert campaign.gather_dtmf is True
        assert campaign.cps == 2.5
        assert campaign.priority == 5


def test_a_setting_out_of_bounds_is_invalid_option(cli: Cli) -> None:
    message = cli.fails(
        "campaigns",
        "create",
        "--name",
        "Bad",
        "--csv",
        str(SAMPLE_CSV),
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
    assert draft["contacts"]["pending"] == created["accepted"]
    assert draft["outcomes"]["human"] == 0
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


def test_accounts_create_key(cli: Cli, committed_db: str) -> None:
    lines = cli.ok("accounts", "create-key").splitlines()

    assert len(lines) == 1
    [key] = lines
    assert len(key) >= 32
    account = _account(committed_db, "default")
    assert account is not None
    assert account.api_key_hash == hash_api_key(key)


def test_flower_refuses_to_start_without_a_password(cli: Cli) -> None:
    cli.env["FLOWER_PASSWORD"] = ""
    cli.fails("flower", code="flower_password_unset")


def test_demo_refuses_an_unknown_fault_before_starting_anything(cli: Cli) -> None:
    message = cli.fails("demo", "--fault", "nonsense=2", "--json", code="invalid_fault")
    assert "502-after" in message  # it lists the faults it knows


def test_simulator_help_names_every_fault(cli: Cli) -> None:
    from dialer.simulator import Fault

    cli.env["COLUMNS"] = "400"
    help_text = " ".join(cli.ok("simulator", "--help").split())
    for fault in Fault:
        assert fault.value in help_text, fault
