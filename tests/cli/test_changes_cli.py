"""`dialer campaigns set` and `dialer calls cancel` (issue 22 part 6), run as a user runs
them (a subprocess on the test database): the same schema, refusals and history as
`PATCH /v1/campaigns/{id}` and `DELETE /v1/calls/{id}`."""

from __future__ import annotations

import getpass

from sqlalchemy import select

from models import Account, CallerId, Campaign, transaction
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


def test_campaigns_set_changes_the_pool_menu_voicemail_and_recording(
    cli: Cli,  # noqa: F811
    committed_db: str,
) -> None:
    """The caller-ID pool (repeatable `--caller-id-pool`), the menu (JSON text) and opt-out
    line, the voicemail message and the recording change on a running campaign, each in
    its history; the refusals are the API's codes."""
    with transaction(committed_db) as session:
        owner = session.scalars(select(Account).where(Account.name == "default")).one()
        for number in ("+14155550101", "+14155550102"):
            session.add(CallerId(account_id=owner.id, e164=number))
    campaign = str(cli.create()["campaign_id"])
    cli.ok("campaigns", "start", campaign)
    pooled = cli.json(
        "campaigns", "set", campaign, "--caller-id-pool", "+14155550101",
        "--caller-id-pool", "+14155550102", "--reason", "capacity", "--json",
    )  # fmt: skip
    assert pooled["changes"] == {
        "caller_id_pool": {"before": ["+15005550006"], "after": ["+14155550101", "+14155550102"]}
    }
    changed = cli.json(
        "campaigns", "set", campaign, "--menu", '{"1": "confirm", "3": "repeat"}',
        "--opt-out-digit", "0", "--voicemail-message", "Please call us back.", "--record",
        "--recording-disclosure", "", "--reason", "new script", "--json",
    )  # fmt: skip
    menu = {
        "digits": {
            "1": {"action": "confirm", "to": None},
            "3": {"action": "repeat", "to": None},
            "0": {"action": "opt_out", "to": None},
        },
        "prompt": "To confirm, press 1. To hear this message again, press 3. "
        "To stop these calls, press 0.",
    }
    assert changed["changes"] == {
        "voicemail_message": {"before": None, "after": "Please call us back."},
        "menu": {
            "before": {
                "digits": {"9": {"action": "opt_out", "to": None}},
                "prompt": "To stop these calls, press 9.",
            },
            "after": menu,
        },
        "record": {"before": False, "after": True},
        "recording_disclosure": {"before": "This call may be recorded.", "after": None},
    }
    off = cli.json(
        "campaigns", "set", campaign, "--menu", '{"1": "confirm"}', "--no-opt-out-line",
        "--clear", "voicemail_message", "--reason", "r", "--json",
    )  # fmt: skip
    assert off["changes"]["menu"]["after"] == {
        "digits": {"1": {"action": "confirm", "to": None}},
        "prompt": "To confirm, press 1.",
    }
    assert off["changes"]["voicemail_message"] == {"before": "Please call us back.", "after": None}
    single = cli.json("campaigns", "set", campaign, "--from", "+14155550102", "--reason", "r",
                      "--json")  # fmt: skip
    assert single["changes"]["from_number"]["before"] == ["+14155550101", "+14155550102"]
    with transaction(committed_db) as session:
        stored = session.get_one(Campaign, int(campaign))
        assert (stored.pool_caller_ids, stored.record, stored.voicemail_message) == ([], True, None)

    cli.fails("campaigns", "set", campaign, "--menu", '{"1": "dance"}', "--reason", "r",
              code="invalid_menu")  # fmt: skip
    # The line is off since the change above; turned on again it takes key 9.
    cli.fails("campaigns", "set", campaign, "--menu", '{"9": "confirm"}', "--opt-out-line",
              "--reason", "r", code="invalid_menu")  # fmt: skip
    cli.fails("campaigns", "set", campaign, "--caller-id-pool", "+14155550199", "--reason", "r",
              code="from_number_not_found")  # fmt: skip
    cli.fails(
        "campaigns", "set", campaign, "--from", "+14155550101", "--caller-id-pool",
        "+14155550102", "--reason", "r", code="invalid_option",
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
