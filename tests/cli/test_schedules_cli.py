"""`dialer schedules ...` and `dialer campaigns history` as a user runs them."""

from __future__ import annotations

import getpass
from pathlib import Path

from tests.cli.test_cli import Cli, cli

__all__ = ["cli"]  # the fixture


def test_schedules_commands_and_histories(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "tomorrow.csv"
    source.write_text("phone,first_name\n+12025550101,Ada\n+12025550102,Bob\n")
    created = cli.json(
        "schedules", "create", "--name", "Clinic", "--cron", "0 9 * * mon-fri",
        "--timezone", "Europe/London", "--csv", str(source), "--max-concurrency", "3",
        "--message", "Hi {first_name}", "--catch-up-s", "600", "--json",
    )  # fmt: skip
    assert set(created) == {"schedule_id", "next_run_at", "warnings"}
    assert created["warnings"] == []
    schedule = str(created["schedule_id"])
    [listed] = cli.json("schedules", "list", "--json")
    assert (listed["cron"], listed["catch_up_s"], listed["status"]) == (
        "0 9 * * mon-fri",
        600,
        "active",
    )
    assert listed["csv_path"] == str(source) and listed["options"]["max_concurrency"] == 3
    assert cli.ok("schedules", "pause", schedule).strip() == f"schedule {schedule}: paused"
    cli.fails("schedules", "pause", schedule, code="invalid_state")
    assert cli.ok("schedules", "resume", schedule).strip() == f"schedule {schedule}: active"

    fired = cli.json("schedules", "run-now", schedule, "--json")
    assert fired["status"] == "ok" and fired["campaign_id"]
    [run] = cli.json("schedules", "runs", schedule, "--json")
    assert (run["manual"], run["rows"], run["accepted"]) == (True, 2, 2)
    campaign = str(fired["campaign_id"])
    cli.ok("campaigns", "pause", campaign)
    me = f"cli:{getpass.getuser()}"
    history = cli.json("campaigns", "history", campaign, "--json")
    assert [(e["action"], e["actor"]) for e in history] == [
        ("fire", me),
        ("start", me),
        ("pause", me),
    ]
    assert "pause" in cli.ok("campaigns", "history", campaign)

    source.unlink()
    assert cli.json("schedules", "run-now", schedule, "--json")["status"] == "failed"
    failed = cli.json("schedules", "runs", schedule, "--json")[0]
    assert failed["error_code"] == "source_not_found"
    assert "failed" in cli.ok("schedules", "runs", schedule)

    cli.fails("schedules", "runs", schedule, "--account", "other", code="schedule_not_found")
    cli.fails("schedules", "delete", schedule, "--account", "other", code="schedule_not_found")
    assert cli.ok("schedules", "delete", schedule).strip() == f"schedule {schedule}: deleted"
    cli.fails("schedules", "run-now", schedule, code="schedule_not_found")
    assert cli.json("schedules", "list", "--json") == []


def test_bad_schedules_are_refused(cli: Cli, tmp_path: Path) -> None:
    base = ["schedules", "create", "--name", "X", "--csv", str(tmp_path / "x.csv")]
    cli.fails(*base, "--cron", "0 9 * *", "--timezone", "UTC", code="invalid_cron")
    cli.fails(*base, "--cron", "0 9 * * *", "--timezone", "Mars/Base", code="invalid_timezone")
    cli.fails(*base, "--cron", "0 9 * * *", "--timezone", "UTC", code="missing_field")
    cli.fails(
        *base, "--cron", "0 9 * * *", "--timezone", "UTC", "--message", "Hi.",
        "--max-attempts", "0", code="invalid_option",
    )  # fmt: skip
    for fixed in ("--start-at", "--end-at", "--allow-premium"):
        # A schedule has no fixed dates, and the number policy is the installation's.
        result = cli.run(
            *base, "--cron", "0 9 * * *", "--timezone", "UTC", "--message", "Hi.", fixed, "x"
        )
        assert result.returncode == 2, fixed
        assert "No such option" in result.stderr, fixed
    cli.fails(
        *base, "--cron", "0 9 * * *", "--timezone", "UTC", "--message", "Hi.",
        "--retry-policy", '{"answered": {"retry": true, "delay_s": 60}}', code="invalid_option",
    )  # fmt: skip


def test_a_minutely_schedule_of_one_csv_is_warned_of_the_frequency_cap(
    cli: Cli, tmp_path: Path
) -> None:
    source = tmp_path / "reminders.csv"
    source.write_text("phone,first_name\n+12025550101,Ada\n")
    base = ["schedules", "create", "--name", "R", "--timezone", "UTC", "--csv", str(source)]
    created = cli.json(*base, "--cron", "* * * * *", "--message", "Hi.", "--json")
    assert [w["code"] for w in created["warnings"]] == ["frequency_cap_stall"]
    said = cli.ok(*base, "--cron", "*/5 * * * *", "--message", "Hi.")
    assert "frequency_cap_stall" in said and "frequency_caps" in said
    daily = cli.json(*base, "--cron", "0 9 * * *", "--message", "Hi.", "--json")
    assert daily["warnings"] == []
