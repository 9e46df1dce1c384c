"""The campaign page in a real browser: Debian's Chromium, headless, driven by selenium through
chromedriver (`make browser` installs both), against the whole chain with a running campaign.

The page shows each report figure in an element marked `data-field="<path>"` with
`data-format`; the test reads them all and compares them with what
`GET /v1/campaigns/{id}/report` answers at that moment, formatted the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
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
