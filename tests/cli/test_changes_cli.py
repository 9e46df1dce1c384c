"""`dialer campaigns set` and `dialer calls cancel` (issue 22 part 6), run as a user runs
them (a subprocess on the test database): the same schema, refusals and history as
`PATCH /v1/campaigns/{id}` and `DELETE /v1/calls/{id}`."""

from __future__ import annotations

import getpass

from models import Campaign, transaction
from tests.cli.test_cli import Cli, cli  # noqa: F401  # the fixture


def test_campaigns_set_changes_a_campaign_and_records_it(cli: Cli, committed_db: str) -> None:  # noqa: F811
    campaign = str(cli.create()["campaign_id"])
    cli.ok("campaigns", "start", campaign)
    said = cli.ok(
        "campaigns", "set", campaign, "--max-concurrency", "3", "--window", "10:00-18:00",
        "--days", "mon-fri", "--reason", "fewer lines this week",
    )  # fmt: skip
    assert "3 setting(s) changed" in said
    assert "max_concurrency: 10 -> 3" in said
    with transaction(committed_db) as session:
        stored = session.get_one(Campaign, int(campaign))
        assert stored.max_concurrency == 3
        assert stored.window_days == [0, 1, 2, 3, 4]
    change = cli.json("campaigns", "history", campaign, "--json")[-1]
    assert change["action"] == "change"
    assert change["actor"] == f"cli:{getpass.getuser()}"
    assert change["reason"] == "fewer lines this week"
    assert change["changes"]["window"] == {"before": "09:00-20:00", "after": "10:00-18:00"}
    assert change["api_key_id"] is None

    cleared = cli.json("campaigns", "set", campaign, "--cps", "0.5", "--reason", "slower", "--json")
    assert cleared["changes"] == {"cps": {"before": None, "after": 0.5}}
    cleared = cli.json("campaigns", "set", campaign, "--clear", "cps", "--reason", "r", "--json")
    assert cleared["changes"] == {"cps": {"before": 0.5, "after": None}}

    cli.fails("campaigns", "set", campaign, "--max-concurrency", "3", code="missing_field")
    cli.fails(
        "campaigns", "set", campaign, "--max-concurrency", "0", "--reason", "r",
        code="invalid_option",
    )  # fmt: skip
    cli.fails(
        "campaigns", "set", campaign, "--window", "06:00-22:00", "--reason", "r",
        code="window_outside_legal_hours",
    )  # fmt: skip
    cli.fails("campaigns", "set", campaign, "--clear", "message", "--reason", "r",
              code="invalid_option")  # fmt: skip
    assert cli.run("campaigns", "set", campaign, "--max-attempts", "2").returncode != 0
    cli.fails(
        "campaigns", "set", campaign, "--max-concurrency", "2", "--reason", "r",
        "--account", "other", code="campaign_not_found",
    )  # fmt: skip
    cli.ok("campaigns", "cancel", campaign)
    cli.fails(
        "campaigns", "set", campaign, "--max-concurrency", "2", "--reason", "r",
        code="campaign_ended",
    )  # fmt: skip


def test_calls_cancel_cancels_a_queued_call_once(cli: Cli) -> None:  # noqa: F811
    placed = cli.json(
        "calls", "place", "--to", "+447386172392", "--message", "Hi.",
        "--call-at", "2099-01-01T12:00:00+0000", "--json",
    )  # fmt: skip
    call = str(placed["call_id"])
    cli.fails("calls", "cancel", call, "--account", "other", code="call_not_found")
    assert cli.ok("calls", "cancel", call).strip() == f"call {call}: canceled"
    assert cli.json("calls", "show", call, "--json")["status"] == "canceled"
    cli.fails("calls", "cancel", call, code="call_ended")
    cli.fails("calls", "cancel", "987654321", code="call_not_found")
