"""The simulator's REST surface: auth, errors, shapes, paging, run-time config, fault parsing."""

from __future__ import annotations

import re

import httpx
import pytest

from dialer.simulator import SimulatorConfig, parse_faults
from tests.simulator.support import ACCOUNT_SID, CALLS_PATH, TERMINAL, run_sim


def test_wrong_or_missing_credentials_get_twilio_401() -> None:
    with run_sim() as sim:
        for auth in [(ACCOUNT_SID, "wrong-token"), None]:
            response = httpx.post(sim.base_url + CALLS_PATH, data={"To": "+15551230001"}, auth=auth)
            assert response.status_code == 401
            assert response.json() == {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            }
        assert sim.stats()["calls_created"] == 0


def test_unknown_sid_is_404_20404() -> None:
    with run_sim() as sim:
        response = sim.http.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/CA{'0' * 32}.json")
        assert response.status_code == 404
        assert response.json()["code"] == 20404
        assert response.json()["status"] == 404


def test_create_returns_twilio_call_resource() -> None:
    with run_sim() as sim:
        response = sim.create(To="+15551230001", Timeout="20")
        assert response.status_code == 201
        call = response.json()
        assert re.fullmatch(r"CA[0-9a-f]{32}", call["sid"])
        assert call["status"] == "queued"
        assert call["direction"] == "outbound-api"
        assert call["api_version"] == "2010-04-01"
        assert call["account_sid"] == ACCOUNT_SID
        assert call["to"] == "+15551230001"
        assert call["from"] == "+15550000000"
        assert call["uri"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call['sid']}.json"
        assert re.fullmatch(
            r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", call["date_created"]
        )
        assert call["duration"] is None


@pytest.mark.parametrize(
    ("to", "code"),
    [
        ("+15005550001", 21217),
        ("+15005550002", 21214),
        ("+15005550003", 21215),
        ("+15005550004", 21216),
        ("12345", 21211),
    ],
)
def test_magic_and_invalid_numbers_are_refused(to: str, code: int) -> None:
    with run_sim() as sim:
        response = sim.create(To=to)
        assert response.status_code == 400
        assert response.json()["code"] == code
        assert sim.stats()["calls_created"] == 0


def test_missing_parameters_are_refused() -> None:
    with run_sim() as sim:
        assert sim.http.post(CALLS_PATH, data={"From": "+15550000000"}).json()["code"] == 21201
        no_twiml = sim.http.post(CALLS_PATH, data={"To": "+15551230001", "From": "+1555"})
        assert no_twiml.json()["code"] == 21205


def test_list_pages_through_calls_newest_first_with_filters() -> None:
    with run_sim(time_scale=1.0) as sim:
        sids = [sim.create(To="+15551230001").json()["sid"] for _ in range(5)]
        sim.create(To="+15551239999")
        seen: list[str] = []
        url: str | None = f"{CALLS_PATH}?To=%2B15551230001&PageSize=2"
        pages = 0
        while url:
            body = sim.http.get(url).json()
            assert body["page_size"] == 2
            assert body["page"] == pages
            seen += [call["sid"] for call in body["calls"]]
            url = body["next_page_uri"]
            pages += 1
        assert pages == 3
        assert seen == list(reversed(sids))
        queued = sim.http.get(CALLS_PATH, params={"Status": "queued", "To": "+15551239999"})
        assert len(queued.json()["calls"]) == 1
        started = sim.http.get(CALLS_PATH, params={"StartTime>": "2000-01-01"})
        assert len(started.json()["calls"]) == 6
        future = sim.http.get(CALLS_PATH, params={"StartTime>": "2999-01-01T00:00:00Z"})
        assert future.json()["calls"] == []
        # Twilio's documented spelling, `StartTime>=YYYY-MM-DD`, parses to the same filter.
        raw = sim.http.get(f"{CALLS_PATH}?StartTime>=2000-01-01&StartTime<=2999-12-31")
        assert len(raw.json()["calls"]) == 6


def test_runtime_config_update_is_partial_and_validated() -> None:
    with run_sim(faults={"callback-lost": 0.5}) as sim:
        response = sim.configure(faults={"429": 1.0}, cps_limit=5)
        assert response.status_code == 200
        assert response.json()["faults"] == {"callback-lost": 0.5, "429": 1.0}
        assert response.json()["cps_limit"] == 5
        throttled = sim.create(To="+15551230001")
        assert throttled.status_code == 429
        assert throttled.json()["code"] == 20429
        assert sim.configure(faults={"nope": 1}).status_code == 422
        assert sim.configure(faults={"429": 2}).status_code == 422


def test_reset_forgets_calls_and_stats() -> None:
    with run_sim(time_scale=1.0) as sim:
        sid = sim.create(To="+15551230001").json()["sid"]
        sim.http.post("/_sim/reset")
        assert sim.stats()["calls_created"] == 0
        assert sim.stats()["live"] == 0
        response = sim.http.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json")
        assert response.status_code == 404


def test_same_seed_gives_same_outcomes() -> None:
    def outcomes() -> list[str]:
        with run_sim(seed=42, time_scale=1.0) as sim:
            for n in range(20):
                sim.create(To=f"+1555123{n:04d}")
            return [call["outcome"] for call in sim.http.get("/_sim/calls").json()]

    first = outcomes()
    assert first == outcomes()
    assert len(set(first)) > 1


def test_terminal_statuses_constant_matches_engine() -> None:
    from dialer.simulator.engine import CallStatus

    assert {status.value for status in CallStatus if status.terminal} == TERMINAL


def test_parse_faults() -> None:
    assert parse_faults(["502-after=0.1", "callback-lost = 1", "502-after=0.2"]) == {
        "502-after": 0.2,
        "callback-lost": 1.0,
    }
    for bad, fragment in [
        ("502-after", "expected NAME=PROBABILITY"),
        ("boom=0.1", "unknown fault 'boom'"),
        ("429=x", "is not a number"),
        ("429=1.5", "not in [0, 1]"),
    ]:
        with pytest.raises(ValueError, match=re.escape(fragment)):
            parse_faults([bad])
    assert SimulatorConfig(faults=parse_faults(["slow=1"])).fault_probability("slow") == 1.0  # type: ignore[arg-type]
    assert parse_faults(["slow-before=0.2"]) == {"slow-before": 0.2}
