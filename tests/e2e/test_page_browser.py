"""The campaign page in a real browser: Debian's Chromium, headless, driven by selenium through
chromedriver (`make browser` installs both), against the whole chain with a running campaign.

The page shows each report figure in an element marked `data-field="<path>"` with
`data-format`; the test reads them all and compares them with what
`GET /v1/campaigns/{id}/report` answers at that moment, formatted the same way. A second
test does an operator's whole job through the page, checked at the carrier.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from dialer.cli.demo import generated_contacts
from dialer.numbers import classify
from models import transaction
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.helpers import start_campaign
from tests.factories import account_named
from tests.support import wait_until
from tests.web.page_support import SESSION_SECRET, give_key

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
KEY = "browser-key-" + "k" * 32
SCREENSHOT = Path(__file__).resolve().parents[2] / "var" / "campaign-page.png"
PREVIEW_SCREENSHOT = SCREENSHOT.with_name("campaign-preview.png")


@pytest.fixture
def slow_stack(tmp_path: Path, committed_db: str, redis_client: Any) -> Iterator[Stack]:
    """The chain with calls that ring about 0.6 s and talk about 4 s, so a campaign of a few
    dozen contacts at three calls at a time runs for a minute."""
    with running_stack(tmp_path, time_scale=0.1) as stack:
        stack.runtime.settings.session_secret = SecretStr(SESSION_SECRET)
        yield stack


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    for program in (CHROMIUM, CHROMEDRIVER):
        assert os.path.exists(program), f"{program} is missing: `make browser` installs it"
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1320,1500",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# --- what the page should show, from the API's report ---------------------------------------


def as_page_shows(value: Any, kind: str) -> str:
    """`value` formatted as `campaign.js` formats it (`toFixed` rounds half away from zero)."""
    if value is None:
        return "" if kind == "optional" else "—"

    def fixed(number: float, places: str) -> str:
        return str(Decimal(number).quantize(Decimal(places), rounding=ROUND_HALF_UP))

    match kind:
        case "int":
            return str(value)
        case "float2":
            return fixed(value, "0.01")
        case "pct":
            return fixed(value * 100, "0.1") + " %"
        case "seconds":
            return fixed(value, "0.1") + " s"
        case "duration":
            return duration(int(fixed(value, "1")))
        case _:
            return str(value)


def duration(s: int) -> str:
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def contract_view(report: dict[str, Any]) -> dict[str, Any]:
    """The report on the contract's paths: the page's `normalize` (contacts by status under
    `contacts`) for a report still in the shape before issue 13's figures; unchanged after."""
    if not isinstance(report["contacts"], int):
        return report
    jobs = report["jobs"]
    return {
        **report,
        "contacts": {
            "total": report["contacts"],
            "pending": jobs.get("pending", 0),
            "dialing": jobs.get("in_progress", 0),
            "done": jobs.get("done", 0),
            "cancelled": jobs.get("canceled", 0),
        },
        "attempts": {
            "total": sum(report["attempts"].values()),
            "calls_placed": report["calls_placed"],
            "late_calls_hung_up": report["late_calls_hung_up"],
        },
        "talk_time": {"total_s": report["talk_seconds"]},
        "breaker": {"trips": report["breaker_trips"]},
    }


def expected(report: dict[str, Any], fields: list[list[str]]) -> dict[str, str]:
    view = contract_view(report)
    shown = {}
    for path, kind, _ in fields:
        value: Any = view
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        shown[path] = as_page_shows(value, kind)
    return shown


def page_fields(driver: WebDriver) -> list[list[str]]:
    """[path, format, text shown] of every figure on the page."""
    fields: list[list[str]] = driver.execute_script(
        "return Array.from(document.querySelectorAll('[data-field]'))"
        ".map(e => [e.dataset.field, e.dataset.format, e.textContent.trim()]);"
    )
    return fields


def text_of(driver: WebDriver, element_id: str) -> str | None:
    """The text of the element with this id, None while the page is loading."""
    text: str | None = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e && e.textContent.trim();",
        element_id,
    )
    return text


def refreshes(driver: WebDriver) -> int:
    count = driver.execute_script(
        "const e = document.getElementById('campaign'); return e && e.dataset.refreshes;"
    )
    return int(count or 0)


def agreed_figures(
    driver: WebDriver, api: httpx.Client, campaign_id: int, timeout_s: float = 30
) -> dict[str, str]:
    """The page's figures once they equal the report API's: right after each refresh of the
    page (every 2 s), the API is asked; a campaign moving in between is asked again."""
    deadline = time.monotonic() + timeout_s
    last: tuple[dict[str, str], dict[str, str]] = ({}, {})
    while time.monotonic() < deadline:
        seen = refreshes(driver)
        wait_until(
            lambda seen=seen: refreshes(driver) > seen, 10, "the page to refresh its figures"
        )
        report = api.get(f"/v1/campaigns/{campaign_id}/report").json()
        fields = page_fields(driver)
        if refreshes(driver) != seen + 1:
            continue  # refreshed again meanwhile: compare after the next one
        shown = {path: text for path, _, text in fields}
        want = expected(report, fields)
        if shown == want:
            return shown
        last = (shown, want)
    raise AssertionError(f"page and API never agreed: page {last[0]} API {last[1]}")


# --- the test ----------------------------------------------------------------------------------


def test_the_page_shows_a_running_campaign_live_and_pauses_it(
    slow_stack: Stack, browser: WebDriver
) -> None:
    stack = slow_stack
    slow_stack.start_worker(concurrency=4)
    _, campaign_id = start_campaign(stack, 40, account_cap=3, max_concurrency=3, max_attempts=1)
    with transaction(stack.runtime.settings.database_url) as session:
        give_key(session, account_named(session, "e2e"), KEY)
    page_url = f"{stack.api_url}/campaigns/{campaign_id}"
    api = httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )

    with api:
        # Signed out, the page sends the browser to the sign-in form, and back after it.
        browser.get(page_url)
        assert browser.current_url.startswith(f"{stack.api_url}/login?next=")
        browser.find_element(By.ID, "api_key").send_keys(KEY)
        browser.find_element(By.ID, "sign-in").click()
        wait_until(lambda: browser.current_url == page_url, 10, "the campaign page")

        first = agreed_figures(browser, api, campaign_id)
        assert first["status"] == "running"
        assert int(first["contacts.total"]) == 40
        # Chart.js came from the package's own static files (no internet here).
        assert browser.execute_script(
            "return typeof Chart !== 'undefined' && !!Chart.getChart('outcomes-chart');"
        )

        # The figures move while the campaign runs, without a reload: the page's own
        # document stays (its marker survives), only the figures change.
        browser.execute_script("document.body.dataset.loadedOnce = 'yes';")
        wait_until(
            lambda: (
                agreed_figures(browser, api, campaign_id)["contacts.done"] != first["contacts.done"]
            ),
            60,
            "the page to show more contacts done",
        )
        later = agreed_figures(browser, api, campaign_id)
        assert int(later["contacts.done"]) > int(first["contacts.done"])
        assert browser.execute_script("return document.body.dataset.loadedOnce;") == "yes"
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))

        # Pause: the page says so, and so does the API.
        browser.find_element(By.ID, "pause-button").click()
        wait_until(
            lambda: text_of(browser, "status") == "paused",
            15,
            "the page to show the campaign paused",
        )
        assert api.get(f"/v1/campaigns/{campaign_id}").json()["status"] == "paused"
        # Only what a paused campaign allows, Resume first among them.
        assert not browser.find_elements(By.ID, "pause-button")
        assert "primary" in browser.find_element(By.ID, "resume-button").get_attribute("class")
        assert agreed_figures(browser, api, campaign_id)["status"] == "paused"


# --- the whole job, from a CSV to the opt-outs -------------------------------------------------

BAD_ROWS = {"duplicate": 1, "invalid_number": 1, "emergency_or_short_code": 1, "do_not_call": 1}
SHORT_CALLS = {"talk": {"median_s": 10.0, "sigma": 0.2, "minimum_s": 5.0, "maximum_s": 20.0}}
"""Calls of ~10 simulated seconds (1 s at this time scale): contacts are done quickly."""
LONG_CALLS = {
    "talk": {"median_s": 1000.0, "sigma": 0.01, "minimum_s": 900.0, "maximum_s": 1100.0},
    "outcome_weights": {"human": 1.0},
}
"""Calls of ~1,000 simulated seconds (100 s at this time scale): live until hung up."""


def contacts_csv(path: Path, contacts: int) -> str:
    """Write `contacts` good rows and one of each bad kind; returns the number listed on the
    account's DNC list beforehand (its row is rejected `do_not_call`)."""
    header, *rows = generated_contacts(contacts + 1).decode().splitlines()
    *good, listed = rows
    zone = good[0].rsplit(",", 1)[1]
    bad = [good[0], f"Nobody,12345,Monday,{zone}", f"Help,911,Monday,{zone}", listed]
    path.write_text("\n".join([header, *good, *bad]) + "\n", encoding="utf-8")
    return listed.split(",")[1]


def shown_done(driver: WebDriver) -> int:
    """The contacts the page shows done (0 until its first figures)."""
    text = driver.execute_script(
        "const e = document.querySelector('[data-field=\"contacts.done\"]');"
        "return e && e.textContent.trim();"
    )
    return int(text) if text and text.isdigit() else 0


def status_shown(driver: WebDriver, status: str) -> Callable[[], bool]:
    return lambda: text_of(driver, "status") == status


def test_the_page_does_the_whole_job(slow_stack: Stack, browser: WebDriver, tmp_path: Path) -> None:
    """Sign in, upload a CSV with bad rows, read the preview, start, watch the calls at the
    carrier, pause, resume, cancel hanging up the live calls, download the results, and
    read the account's opt-outs, all through the page."""
    stack = slow_stack
    stack.start_worker(concurrency=4)
    stack.sim("POST", "/_sim/config", json=SHORT_CALLS)
    with transaction(stack.runtime.settings.database_url) as session:
        give_key(session, account_named(session, "e2e", max_concurrency=3, cps=20), KEY)
    api = httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )
    upload = tmp_path / "contacts.csv"
    listed = contacts_csv(upload, 30)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )

    with api:
        dnc = api.post("/v1/dnc", json={"numbers": [listed], "reason": "asked by phone"})
        assert dnc.json() == {"added": 1}

        # Sign in on the way to the new-campaign form.
        browser.get(f"{stack.api_url}/")
        browser.find_element(By.ID, "api_key").send_keys(KEY)
        browser.find_element(By.ID, "sign-in").click()
        wait_until(lambda: bool(browser.find_elements(By.ID, "nav-new-campaign")), 10, "sign-in")
        browser.find_element(By.ID, "nav-new-campaign").click()
        wait_until(lambda: bool(browser.find_elements(By.ID, "new-campaign")), 10, "the form")

        # A file past the upload bound is refused before it is sent, in the server's words.
        settings = stack.runtime.settings
        bound, settings.upload_max_bytes = settings.upload_max_bytes, 1024
        assert upload.stat().st_size > 1024
        browser.get(f"{stack.api_url}/campaigns/new")
        browser.find_element(By.ID, "name").send_keys("Too big")
        browser.find_element(By.ID, "message").send_keys("Hello")
        browser.find_element(By.ID, "file").send_keys(str(upload))
        browser.find_element(By.ID, "upload-button").click()
        wait_until(lambda: bool(browser.find_elements(By.ID, "page-error")), 5, "the error")
        error = browser.find_element(By.ID, "page-error")
        assert error.find_element(By.CLASS_NAME, "error-code").text == "body_too_large"
        message = error.find_element(By.CLASS_NAME, "error-message").text
        assert message == "the request body is larger than 1024 bytes"
        assert browser.current_url == f"{stack.api_url}/campaigns/new"
        assert api.get("/v1/campaigns").json()["items"] == []
        settings.upload_max_bytes = bound

        # Upload: a draft, and its preview before anything is dialled.
        browser.get(f"{stack.api_url}/campaigns/new")
        browser.find_element(By.ID, "name").send_keys("Browser reminders")
        browser.find_element(By.ID, "message").send_keys("Hello {first_name}.")
        browser.find_element(By.ID, "max_concurrency").send_keys("3")
        browser.find_element(By.ID, "max_attempts").send_keys("1")
        browser.find_element(By.ID, "file").send_keys(str(upload))
        browser.find_element(By.ID, "upload-button").click()
        wait_until(lambda: bool(browser.find_elements(By.ID, "preview")), 30, "the preview")
        campaign_id = int(browser.current_url.rsplit("/", 1)[1])
        campaign = api.get(f"/v1/campaigns/{campaign_id}").json()
        assert campaign["status"] == "draft"
        assert (campaign["ingest"]["accepted"], campaign["ingest"]["rejected"]) == (30, BAD_ROWS)
        reasons = browser.execute_script(
            "return Object.fromEntries(Array.from(document.querySelectorAll('[data-reason]'))"
            ".map(r => [r.dataset.reason, Number(r.querySelector('td').textContent)]));"
        )
        assert reasons == BAD_ROWS
        assert text_of(browser, "preview-accepted") == "30"
        assert text_of(browser, "preview-callable") == "30"  # their window is open now
        for when in ("preview-first-call", "preview-finish"):
            assert (text_of(browser, when) or "").endswith(" UTC"), when
        assert stack.sim("GET", "/_sim/stats")["calls_created"] == 0
        assert browser.save_screenshot(str(PREVIEW_SCREENSHOT))

        # Start, and watch the calls go out and end at the carrier.
        browser.find_element(By.ID, "start-button").click()
        wait_until(status_shown(browser, "running"), 10, "the campaign running")
        wait_until(lambda: shown_done(browser) >= 2, 30, "the page to show contacts done")
        report = api.get(f"/v1/campaigns/{campaign_id}/report").json()
        assert report["contacts"]["done"] >= shown_done(browser) >= 2
        assert stack.sim("GET", "/_sim/stats")["calls_created"] >= 2

        # Pause: no new call; those live finish.
        browser.find_element(By.ID, "pause-button").click()
        wait_until(status_shown(browser, "paused"), 10, "the campaign paused")
        assert api.get(f"/v1/campaigns/{campaign_id}").json()["status"] == "paused"
        wait_until(lambda: stack.sim("GET", "/_sim/stats")["live"] == 0, 20, "calls to end")
        created = stack.sim("GET", "/_sim/stats")["calls_created"]

        # Resume with calls that outlast the test, until some are live.
        stack.sim("POST", "/_sim/config", json=LONG_CALLS)
        browser.find_element(By.ID, "resume-button").click()
        wait_until(status_shown(browser, "running"), 10, "the campaign running again")
        wait_until(lambda: stack.sim("GET", "/_sim/stats")["live"] >= 2, 20, "live calls")
        assert stack.sim("GET", "/_sim/stats")["calls_created"] > created

        # Cancel, hanging up: the live calls end at the carrier.
        browser.find_element(By.ID, "hang-up").click()
        browser.find_element(By.ID, "cancel-button").click()
        WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
        live = stack.sim("GET", "/_sim/stats")["live"]
        browser.switch_to.alert.accept()
        wait_until(status_shown(browser, "canceled"), 10, "the campaign cancelled")
        wait_until(lambda: stack.sim("GET", "/_sim/stats")["live"] == 0, 20, "the hang-ups")
        assert stack.sim("GET", "/_sim/stats")["hang_ups"] >= live >= 2
        wait_until(
            lambda: browser.execute_script(
                "const e = document.getElementById('campaign');"
                "return e && e.dataset.finished === 'true';"
            ),
            30,
            "the page's final figures",
        )
        report = api.get(f"/v1/campaigns/{campaign_id}/report").json()
        assert report["contacts"]["cancelled"] > 0

        # Download the results: the file is what the API serves.
        browser.find_element(By.ID, "export-results-csv").click()
        saved = downloads / f"campaign-{campaign_id}-results.csv"
        wait_until(saved.exists, 10, "the download")
        wanted = api.get(f"/v1/campaigns/{campaign_id}/results.csv").content
        assert saved.read_bytes() == wanted
        assert wanted.count(b"\n") == 31  # the header and every accepted contact

        # The account's opt-outs, the number listed before the upload among them.
        browser.find_element(By.ID, "nav-opt-outs").click()
        wait_until(lambda: bool(browser.find_elements(By.ID, "opt-outs")), 10, "the opt-outs")
        rows = browser.execute_script(
            "return Array.from(document.querySelectorAll('#opt-outs tbody tr')).map(r =>"
            " Object.fromEntries(Array.from(r.cells).map(c => [c.dataset.column,"
            " c.textContent.trim()])));"
        )
        assert [(row["e164"], row["reason"]) for row in rows] == [
            (classify(listed, "US").e164, "asked by phone")
        ]
