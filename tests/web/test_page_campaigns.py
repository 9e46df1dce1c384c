"""The campaign page's whole job over HTTP: a new campaign from an uploaded CSV with its
preview before start, the refusals of that form, the downloads, cancel with hang-up, and the
account's opt-outs."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from dialer.runtime import Runtime
from dialer.web.app import create_app
from dialer.web.routers.pages import MAX_FORM_FIELDS
from models import Campaign, DncEntry, transaction
from tests.factories import account_named
from tests.servers import serve_app
from tests.web.page_support import SESSION_SECRET, form_token, give_key, sign_in

KEY = "page-flow-acme-" + "a" * 32
OTHER_KEY = "page-flow-other-" + "b" * 32
NOW = datetime(2027, 1, 16, 3, 0, tzinfo=UTC)
"""22:00 in New York: the contacts' window (09:00-20:00) opens at 14:00 UTC."""

CSV = (
    b"first_name,phone\n"
    b"Ada,(212) 555-0143\n"
    b"Grace,212.555.0100\n"
    b"Alan,+1 646 555 0177\n"
    b"Ada again,212-555-0143\n"  # duplicate
    b"Nobody,12345\n"  # invalid_number
    b"Help,911\n"  # emergency_or_short_code
    b"Listed,(718) 555-0188\n"  # do_not_call
)
REJECTED = {"duplicate": 1, "invalid_number": 1, "emergency_or_short_code": 1, "do_not_call": 1}


@pytest.fixture
def runtime_settings() -> dict[str, Any]:
    return {"session_secret": SESSION_SECRET}


@dataclass(frozen=True)
class Site:
    url: str
    runtime: Runtime

    def api(self, method: str, path: str, key: str = KEY, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            return http.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)

    def campaigns(self) -> int:
        with transaction(self.runtime.settings.database_url) as session:
            return int(session.scalar(select(func.count()).select_from(Campaign)) or 0)


@pytest.fixture
def site(runtime: Runtime) -> Iterator[Site]:
    runtime.clock = lambda: NOW
    with transaction(runtime.settings.database_url) as session:
        give_key(session, account_named(session, "acme"), KEY)
        give_key(session, account_named(session, "other"), OTHER_KEY)
    with serve_app(create_app(runtime)) as url:
        site = Site(url, runtime)
        listed = site.api("POST", "/v1/dnc", json={"numbers": ["7185550188"], "reason": "asked"})
        assert listed.status_code == 200, listed.text
        yield site


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as client:
        assert sign_in(client, KEY).status_code == 303
        yield client


def upload(
    http: httpx.Client, fields: dict[str, Any], csv: bytes | None = CSV, token: str | None = None
) -> httpx.Response:
    """Send the new-campaign form as a browser does: its token, the fields, the file."""
    if token is None:
        token = form_token(http.get("/campaigns/new").text)
    files = None if csv is None else {"file": ("contacts.csv", csv, "text/csv")}
    return http.post("/campaigns", data={"csrf_token": token, **fields}, files=files)


def shown_error(page: str) -> tuple[str, str]:
    """The (code, message) of the page's error box."""
    box = re.search(
        r'id="page-error" data-code="([\w]+)">\s*<strong class="error-message">([^<]*)</strong>'
        r'\s*<code class="error-code">([\w]+)</code>',
        page,
    )
    assert box, page
    assert box.group(1) == box.group(3)
    return box.group(1), html.unescape(box.group(2))


def text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def by_id(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</t[dr]>', page, re.S)
    assert found, (element_id, page)
    return text(found.group(1))


# --- a new campaign ----------------------------------------------------------------------------


def test_an_upload_makes_a_draft_whose_page_previews_it(site: Site, http: httpx.Client) -> None:
    created = upload(
        http,
        {"name": "Flu shots", "message": "Hello {first_name}", "max_concurrency": "4", "cps": ""},
    )
    assert created.status_code == 303, created.text
    path = created.headers["location"]
    campaign_id = int(path.rsplit("/", 1)[1])
    campaign = site.api("GET", f"/v1/campaigns/{campaign_id}").json()
    assert (campaign["status"], campaign["name"], campaign["max_concurrency"]) == (
        "draft",
        "Flu shots",
        4,
    )
    assert campaign["cps"] is None  # a blank field is the default
    assert campaign["ingest"]["accepted"] == 3
    assert campaign["ingest"]["rejected"] == REJECTED

    page = http.get(path).text
    assert 'id="preview"' in page
    assert by_id(page, "preview-accepted") == "3"
    assert by_id(page, "preview-rejected") == "4"
    reasons = dict(re.findall(r'data-reason="(\w+)"><th>.*?</th><td>(\d+)</td>', page))
    assert {reason: int(n) for reason, n in reasons.items()} == REJECTED
    # The preview's figures are the API's (the clock is the runtime's, fixed).
    preview = site.api("GET", f"/v1/campaigns/{campaign_id}/preview").json()
    first = datetime.fromisoformat(preview["first_call_at"])
    assert first == datetime(2027, 1, 16, 14, 0, tzinfo=UTC)  # 09:00 in New York
    assert by_id(page, "preview-first-call") == "2027-01-16 14:00 UTC"
    finish = datetime.fromisoformat(preview["estimated_finish_at"])
    assert by_id(page, "preview-finish") == finish.strftime("%Y-%m-%d %H:%M UTC")
    assert by_id(page, "preview-callable") == str(preview["callable_now"]) == "0"
    assert by_id(page, "preview-waiting") == str(preview["waiting"]) == "3"
    # Start is the next step; the rejected rows download as the API serves them.
    assert 'id="start-button" data-action="start"' in page
    rejected = http.get(f"{path}/rejected.csv")
    assert rejected.status_code == 200
    assert rejected.content == site.api("GET", f"/v1/campaigns/{campaign_id}/rejected.csv").content
    assert "do_not_call" in rejected.text

    started = http.post(f"{path}/start", data={"csrf_token": form_token(page)})
    assert started.status_code == 303
    assert site.api("GET", f"/v1/campaigns/{campaign_id}").json()["status"] == "running"
    assert 'id="preview"' not in http.get(path).text


@pytest.mark.parametrize(
    ("fields", "csv", "status", "code", "says"),
    [
        ({"max_concurrency": "0"}, CSV, 400, "invalid_option", "max_concurrency"),
        # An internal setting is not the page's either: no tenant input reaches it.
        ({"allow_premium": "true"}, CSV, 400, "invalid_option", "allow_premium: not a setting"),
        ({"window": "07:00-22:00"}, CSV, 400, "window_outside_legal_hours", "08:00"),
        ({"message": "Hello {first_name"}, CSV, 400, "invalid_template", ""),
        ({"start_at": "2027-01-20T09:00"}, CSV, 400, "invalid_schedule", "no offset"),
        ({}, b"name,city\nAda,Paris\n", 422, "no_phone_column", ""),
        ({}, None, 400, "missing_field", "file"),
        ({}, b"", 422, "empty_file", ""),
        ({"name": ""}, CSV, 400, "missing_field", "name"),
    ],
)
def test_a_refused_upload_is_the_form_again_with_the_errors_code_and_message(
    site: Site,
    http: httpx.Client,
    fields: dict[str, str],
    csv: bytes | None,
    status: int,
    code: str,
    says: str,
) -> None:
    before = site.campaigns()
    response = upload(http, {"name": "Flu shots", "message": "Hello {first_name}", **fields}, csv)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    shown_code, message = shown_error(response.text)
    assert shown_code == code
    assert says in message
    # The form again, with what was typed, and nothing created.
    assert 'id="new-campaign"' in response.text
    if fields.get("name", "x"):
        assert 'value="Flu shots"' in response.text
    assert site.campaigns() == before


def test_a_form_of_too_many_fields_is_refused_unread(site: Site, http: httpx.Client) -> None:
    before = site.campaigns()
    token = form_token(http.get("/campaigns/new").text)
    fields = {"csrf_token": token, **{f"extra{n}": "x" for n in range(MAX_FORM_FIELDS)}}
    response = http.post(
        "/campaigns", data=fields, files={"file": ("contacts.csv", CSV, "text/csv")}
    )
    assert response.status_code == 400
    code, message = shown_error(response.text)
    assert code == "invalid_body"
    assert str(MAX_FORM_FIELDS) in message
    assert site.campaigns() == before


def test_an_upload_without_the_sessions_token_is_refused(site: Site, http: httpx.Client) -> None:
    before = site.campaigns()
    for token in ("", "forged"):
        response = upload(http, {"name": "x", "message": "Hello"}, token=token)
        assert response.status_code == 403
        assert shown_error(response.text)[0] == "invalid_csrf_token"
    assert site.campaigns() == before


def test_an_upload_without_a_session_goes_to_sign_in(site: Site) -> None:
    before = site.campaigns()
    with httpx.Client(base_url=site.url, timeout=30) as anonymous:
        response = upload(anonymous, {"name": "x", "message": "Hello"}, token="whatever")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert site.campaigns() == before


def test_an_upload_past_the_bound_is_a_413_page(site: Site, http: httpx.Client) -> None:
    site.runtime.settings.upload_max_bytes = 4096
    form = http.get("/campaigns/new").text
    assert 'data-max-bytes="4096"' in form  # the page's script checks it before sending
    assert 'data-too-large-code="body_too_large"' in form
    big = CSV + b"".join(b"Ada,(212) 555-%04d\n" % n for n in range(400))
    before = site.campaigns()
    response = upload(http, {"name": "x", "message": "Hello"}, big, token=form_token(form))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="error-code">body_too_large<' in response.text
    assert "larger than 4096 bytes" in response.text
    assert site.campaigns() == before
    # The API's own upload keeps the error shape.
    api = site.api("POST", "/v1/campaigns", files={"file": ("a.csv", big, "text/csv")})
    assert api.status_code == 413
    assert api.json()["error"]["code"] == "body_too_large"


# --- one campaign ------------------------------------------------------------------------------


def draft(http: httpx.Client) -> str:
    created = upload(http, {"name": "Flu shots", "message": "Hello {first_name}"})
    assert created.status_code == 303, created.text
    return str(created.headers["location"])


@pytest.mark.parametrize(
    ("export", "media_type"),
    [
        ("results.csv", "text/csv"),
        ("attempts.csv", "text/csv"),
        ("results.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("attempts.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ],
)
def test_the_page_offers_the_exports_as_the_api_serves_them(
    site: Site, http: httpx.Client, export: str, media_type: str
) -> None:
    path = draft(http)
    page = http.get(path).text
    assert f'href="{path}/{export}"' in page
    assert f'href="{path}/rejected.csv"' in page
    mine = http.get(f"{path}/{export}")
    assert mine.status_code == 200
    assert mine.headers["content-type"].startswith(media_type)
    assert f"campaign-{path.rsplit('/', 1)[1]}-{export}" in mine.headers["content-disposition"]
    theirs = site.api("GET", f"/v1{path}/{export}")
    if export.endswith(".csv"):
        assert mine.text == theirs.text
        assert mine.text.count("\n") == (4 if export == "results.csv" else 1)
    else:
        assert mine.content.startswith(b"PK")  # a workbook (its zip stamps its own time)


def test_exports_of_another_account_or_of_nothing_are_404_pages(
    site: Site, http: httpx.Client
) -> None:
    with httpx.Client(base_url=site.url, timeout=30) as other:
        assert sign_in(other, OTHER_KEY).status_code == 303
        clean = upload(other, {"name": "o", "message": "Hi"}, b"phone\n2125550143\n")
        other_path = clean.headers["location"]
        nothing_rejected = other.get(f"{other_path}/rejected.csv")
        assert nothing_rejected.status_code == 404
        assert 'id="error-code">no_rejected_rows<' in nothing_rejected.text
        assert f'href="{other_path}/rejected.csv"' not in other.get(other_path).text
    for export in ("results.csv", "rejected.csv", "attempts.xlsx"):
        response = http.get(f"{other_path}/{export}")
        assert response.status_code == 404
        assert 'id="error-code">campaign_not_found<' in response.text
    unknown = http.get(f"{draft(http)}/secrets.txt")
    assert unknown.status_code == 400
    assert 'id="error-code">invalid_request<' in unknown.text


def test_cancel_takes_the_hang_up_choice(site: Site, http: httpx.Client) -> None:
    """The box is on a running campaign's Cancel form and is sent as the API's `hang_up`
    (that live calls are then hung up at the carrier: tests/e2e/test_page_browser.py)."""
    path = draft(http)
    assert 'name="hang_up"' not in http.get(path).text  # a draft has no live call
    token = form_token(http.get(path).text)
    assert http.post(f"{path}/start", data={"csrf_token": token}).status_code == 303
    page = http.get(path).text
    cancel_form = re.search(rf'<form method="post" action="{path}/cancel".*?</form>', page, re.S)
    assert cancel_form
    assert 'name="hang_up" value="true"' in cancel_form.group(0)
    refused = http.post(f"{path}/cancel", data={"csrf_token": token, "hang_up": "maybe"})
    assert refused.status_code == 400
    assert 'id="error-code">invalid_body<' in refused.text
    assert site.api("GET", f"/v1/campaigns/{path.rsplit('/', 1)[1]}").json()["status"] == "running"
    canceled = http.post(f"{path}/cancel", data={"csrf_token": token, "hang_up": "true"})
    assert canceled.status_code == 303
    campaign_id = path.rsplit("/", 1)[1]
    assert site.api("GET", f"/v1/campaigns/{campaign_id}").json()["status"] == "canceled"
    events = site.api("GET", f"/v1/campaigns/{campaign_id}/events").json()["items"]
    assert events[-1]["actor"] == "page:acme"


# --- opt-outs ----------------------------------------------------------------------------------


def rows_of(page: str) -> list[dict[str, str]]:
    table = re.search(r'<table class="list" id="opt-outs">(.*?)</table>', page, re.S)
    assert table, page
    heads = re.findall(r'<th data-column="(\w+)">', table.group(1))
    rows = re.findall(r"<tr>(<td.*?)</tr>", table.group(1), re.S)
    return [
        dict(zip(heads, map(text, re.findall(r"<td[^>]*>(.*?)</td>", row)), strict=True))
        for row in rows
    ]


def test_the_opt_outs_are_the_accounts_dnc_entries_newest_first(
    site: Site, http: httpx.Client
) -> None:
    numbers = [f"+1212555{n:04d}" for n in range(101)]
    assert site.api("POST", "/v1/dnc", json={"numbers": numbers}).status_code == 200
    other = site.api("POST", "/v1/dnc", json={"numbers": ["+13125550100"]}, key=OTHER_KEY)
    assert other.status_code == 200
    with transaction(site.runtime.settings.database_url) as session:
        session.execute(  # the entry of the fixture, listed before the others
            update(DncEntry)
            .where(DncEntry.e164 == "+17185550188")
            .values(created_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
    page = http.get("/opt-outs")
    assert page.status_code == 200
    first = rows_of(page.text)
    assert len(first) == 100
    # Every column of an entry, whatever the list records (the source of an opt-out too).
    assert {"e164", "reason", "created_at"} <= set(first[0])
    assert "account_id" not in first[0]
    assert [row["e164"] for row in first] == sorted(numbers, reverse=True)[:100]
    assert "+13125550100" not in page.text
    older = re.search(r'href="(/opt-outs\?cursor=[^"]+)" id="next-page"', page.text)
    assert older
    second = rows_of(http.get(html.unescape(older.group(1))).text)
    assert [(row["e164"], row["reason"]) for row in second] == [
        ("+12125550000", ""),
        ("+17185550188", "asked"),
    ]
    assert second[1]["created_at"] == "2026-01-01 00:00:00"
    stale = http.get("/opt-outs", params={"cursor": "not-a-cursor"})
    assert stale.status_code == 400
    assert 'id="error-code">invalid_cursor<' in stale.text


def test_the_pages_link_to_each_other(site: Site, http: httpx.Client) -> None:
    index = http.get("/").text
    for href in ("/campaigns/new", "/opt-outs"):
        assert f'href="{href}"' in index
        assert http.get(href).status_code == 200
