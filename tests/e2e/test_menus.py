"""Keypress menus, opt-outs, voicemail drops and recordings through the whole chain: real
Celery workers, the HTTP API's webhooks and the carrier simulator, whose call log (what
each call said, pressed and dialled, in simulated seconds since its answer) is the witness.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import select

from campaigns import lifecycle
from campaigns.reports import export_attempts, export_results, export_xlsx
from dialer.cli.demo import generated_contacts
from dialer.numbers import classify
from dialer.simulator.config import LogNormal
from models import CallAttempt, DncEntry, WebhookEvent, WebhookStatus, transaction
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.helpers import outcomes, report, start_campaign, wait_finished
from tests.factories import account_named
from tests.receiver import Receiver
from tests.servers import serve_app
from tests.support import wait_until
from workers import enqueue  # registers the outbox's dispatcher: commits send first tries

TRANSFER_TO = "+12125550100"
MENU = {
    "1": "confirm",
    "2": "cancel",
    "3": "repeat",
    "4": {"action": "transfer", "to": TRANSFER_TO},
}
MESSAGE = "Hello {first_name}, see you {appointment_time}."
LONG_TALK = LogNormal(median_s=300, sigma=0, minimum_s=300, maximum_s=300)
"""People stay on the line 300 simulated seconds (1.5 s): longer than any menu here."""


def phones(n: int, first: int = 0) -> list[str]:
    """The E.164 numbers of `generated_contacts(n, first)`, in order."""
    rows = csv.DictReader(io.StringIO(generated_contacts(n, first).decode()))
    return [classify(row["phone"], "US").e164 for row in rows]


def call_log(stack: Stack, to: str) -> list[dict[str, Any]]:
    """The simulator's one call to `to`: its log."""
    [call] = [c for c in stack.sim("GET", "/_sim/calls") if c["to"] == to]
    log: list[dict[str, Any]] = call["log"]
    return log


def said(log: list[dict[str, Any]]) -> list[str]:
    return [entry["text"] for entry in log if entry["what"] == "say"]


def attempts_by_phone(stack: Stack, campaign_id: int) -> dict[str, CallAttempt]:
    with transaction(stack.runtime.settings.database_url) as session:
        rows = session.scalars(select(CallAttempt).where(CallAttempt.campaign_id == campaign_id))
        return {a.phone_e164: a for a in rows}


def test_each_menu_key_at_the_carrier(tmp_path: Path, committed_db: str, redis_client: Any) -> None:
    to = phones(6)
    keys = {
        to[0]: ["1"],
        to[1]: ["2"],
        to[2]: ["3", "1"],  # repeat, then confirm
        to[3]: ["4"],
        to[4]: ["9"],
        to[5]: ["7", "7"],  # an invalid key twice
    }
    with running_stack(
        tmp_path, outcome_weights={"human": 1.0}, talk=LONG_TALK, keypresses_by_number=keys
    ) as stack:
        stack.start_worker(concurrency=4)
        account_id, campaign_id = start_campaign(stack, 6, menu=MENU)
        final = wait_finished(stack, account_id, campaign_id)
        logs = {phone: call_log(stack, phone) for phone in to}

    actions = {p: a.menu_action for p, a in attempts_by_phone(stack, campaign_id).items()}
    assert actions == {
        to[0]: "confirm",
        to[1]: "cancel",
        to[2]: "confirm",
        to[3]: "transfer",
        to[4]: "opt_out",
        to[5]: None,
    }
    # What each person heard, as the carrier ran it.
    for phone in to:
        assert said(logs[phone])[0].startswith("Hello ")
        assert "To stop these calls, press 9." in said(logs[phone])[1]
    assert said(logs[to[0]])[-1] == "Thank you, your answer is confirmed. Goodbye."
    assert logs[to[0]][-1]["what"] == "hangup"
    assert said(logs[to[1]])[-1] == "Thank you, we have noted your cancellation. Goodbye."
    repeated = said(logs[to[2]])
    assert repeated[2] == repeated[0]  # the message again, then the menu again
    assert [e["digits"] for e in logs[to[2]] if e["what"] == "key"] == ["3", "1"]
    assert [e["number"] for e in logs[to[3]] if e["what"] == "dial"] == [TRANSFER_TO]
    assert said(logs[to[4]])[-1] == "You will not receive these calls again. Goodbye."
    invalid = said(logs[to[5]])
    assert invalid[2:] == [
        "Sorry, that is not one of the choices.",
        invalid[1],  # the menu once more
        "Goodbye.",
    ]
    assert logs[to[5]][-1]["what"] == "hangup"
    # Keys come after the prompt that offers them, in simulated time.
    for log in logs.values():
        times = [e["at_s"] for e in log]
        assert times == sorted(times)
    assert final["attempts"]["opt_outs"] == 1
    with transaction(stack.runtime.settings.database_url) as session:
        listed = session.scalars(select(DncEntry).where(DncEntry.account_id == account_id))
        assert [(e.e164, e.source, e.campaign_id) for e in listed] == [
            (to[4], "keypress", campaign_id)
        ]


def test_an_opt_out_stops_the_accounts_other_campaigns(
    tmp_path: Path, committed_db: str, redis_client: Any
) -> None:
    """The same number in two campaigns of the account: its callee presses 9 on the first
    campaign's call; the second campaign, started afterwards, never dials it (the pacer's
    claim checks the DNC list), as the carrier's call log shows."""
    [to] = phones(1)
    with running_stack(
        tmp_path, outcome_weights={"human": 1.0}, talk=LONG_TALK, keypresses_by_number={to: ["9"]}
    ) as stack:
        url = stack.runtime.settings.database_url
        with transaction(url) as session:
            account_id = account_named(session, "e2e", max_concurrency=10, cps=50).id
        second = lifecycle.import_campaign(
            url,
            stack.runtime.settings.data_dir,
            account_id,
            lifecycle.CampaignOptions(name="second", message=MESSAGE),
            io.BytesIO(generated_contacts(1)),
        ).campaign_id
        stack.start_worker(concurrency=2)
        _, first = start_campaign(stack, 1)
        wait_finished(stack, account_id, first)
        with transaction(url) as session:
            lifecycle.start(session, account_id, second, actor="test")
        enqueue.kick_pacer(account_id)
        final = wait_finished(stack, account_id, second)
        calls = [c for c in stack.sim("GET", "/_sim/calls") if c["to"] == to]

    assert len(calls) == 1  # the first campaign's, where the key was pressed
    assert [e["digits"] for e in calls[0]["log"] if e["what"] == "key"] == ["9"]
    assert outcomes(final) == {"do_not_call": 1}
    assert report(stack, account_id, first)["attempts"]["opt_outs"] == 1
    assert final["attempts"]["opt_outs"] == 0


def test_the_voicemail_message_is_left_after_the_beep(
    tmp_path: Path, committed_db: str, redis_client: Any
) -> None:
    [to] = phones(1)
    greeting = LogNormal(median_s=12, sigma=0, minimum_s=12, maximum_s=12)
    with running_stack(
        tmp_path,
        outcomes_by_number={to: "machine_end_beep"},
        talk_seconds_by_number={to: 300},
        greeting=greeting,
    ) as stack:
        stack.start_worker(concurrency=2)
        account_id, campaign_id = start_campaign(
            stack, 1, voicemail_message="Sorry we missed you, {first_name}. Please call back."
        )
        final = wait_finished(stack, account_id, campaign_id)
        log = call_log(stack, to)
        create = stack.sim("GET", "/_sim/calls")[0]

    assert create["answered_by"] == "machine_end_beep"
    whats = [e["what"] for e in log]
    beep = whats.index("beep")
    update = whats.index("update")
    assert beep < update
    assert abs(log[beep]["at_s"] - 12.0) < 1.0  # the greeting's end
    voicemail = log[update + 1]
    assert voicemail["what"] == "say"
    assert voicemail["text"] == "Sorry we missed you, Ada. Please call back."
    assert voicemail["at_s"] >= log[beep]["at_s"]
    assert whats[-1] == "hangup"  # said, then the call ends
    assert final["attempts"]["voicemail_drops"] == 1
    assert outcomes(final) == {"machine.machine_end_beep": 1}  # not retried: the matrix's
    [attempt] = attempts_by_phone(stack, campaign_id).values()
    assert attempt.voicemail_dropped_at is not None


def test_recordings_and_call_answered_reach_the_webhook_and_the_exports(
    tmp_path: Path, committed_db: str, redis_client: Any
) -> None:
    receiver = Receiver()
    with (
        serve_app(receiver) as base,
        running_stack(tmp_path, outcome_weights={"human": 1.0}) as stack,
    ):
        stack.env["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"  # the receiver is on loopback
        url = stack.runtime.settings.database_url
        with transaction(url) as session:
            account_named(session, "e2e", max_concurrency=10, cps=50).webhook_url = base + "/hook"
        stack.start_worker(concurrency=2)
        account_id, campaign_id = start_campaign(stack, 2, record=True)
        wait_finished(stack, account_id, campaign_id)

        def delivered() -> bool:
            with transaction(url) as session:
                events = session.scalars(select(WebhookEvent)).all()
                return bool(events) and all(e.status is WebhookStatus.DELIVERED for e in events)

        wait_until(delivered, 30, "the webhooks to be delivered")
        sim_calls = {c["to"]: c for c in stack.sim("GET", "/_sim/calls")}

    attempts = attempts_by_phone(stack, campaign_id)
    assert len(attempts) == 2
    for phone, attempt in attempts.items():
        call = sim_calls[phone]
        # The disclosure first, then the message.
        assert said(call["log"])[:1] == ["This call may be recorded."]
        [recorded] = [e for e in call["log"] if e["what"] == "recording"]
        assert attempt.recording_sid == recorded["sid"]
        assert attempt.recording_url and attempt.recording_url.endswith(recorded["sid"])
        assert attempt.recording_duration_s == int(call["duration"])
    events = [r.event for r in receiver.at("/hook")]
    answered = [e["data"] for e in events if e["type"] == "call.answered"]
    assert {a["to"] for a in answered} == set(attempts)
    completed = {e["data"]["to"]: e["data"] for e in events if e["type"] == "call.completed"}
    for phone, attempt in attempts.items():
        assert completed[phone]["recording_url"] == attempt.recording_url
        assert completed[phone]["recording_duration_s"] == attempt.recording_duration_s

    with transaction(url) as session:
        contacts, tries, book = io.StringIO(), io.StringIO(), io.BytesIO()
        export_results(session, account_id, campaign_id, contacts)
        export_attempts(session, account_id, campaign_id, tries)
        export_xlsx(session, account_id, campaign_id, book, attempts=True)
    for text in (contacts.getvalue(), tries.getvalue()):
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["recording_url"] for r in rows} == {a.recording_url for a in attempts.values()}
        assert {r["recording_duration_s"] for r in rows} == {
            str(a.recording_duration_s) for a in attempts.values()
        }
    with zipfile.ZipFile(book) as workbook:
        sheet = workbook.read("xl/worksheets/sheet1.xml").decode()
    assert "recording_url" in sheet
    assert all(str(a.recording_url) in sheet for a in attempts.values())
