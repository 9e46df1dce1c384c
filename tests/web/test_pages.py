"""The campaign page over HTTP: sign-in and its cookie, the CSRF rule, the pages and their
data endpoint, the static files, and the /v1 API that never takes the cookie."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from pydantic import SecretStr, ValidationError

from campaigns.accounts import list_api_keys, revoke_api_key
from dialer.campaign_state import PACER, CampaignAction, transition
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.web import sessions
from dialer.web.app import create_app
from models import Campaign, transaction
from tests.factories import account_named
from tests.servers import serve_app
from tests.web.page_support import SESSION_SECRET, form_token, give_key, sign_in

SAMPLE = Path(__file__).resolve().parents[2] / "campaigns" / "samples" / "appointments.csv"
KEY = "page-key-acme-" + "a" * 32
OTHER_KEY = "page-key-other-" + "b" * 32


@pytest.fixture
def runtime_settings() -> dict[str, Any]:
    return {"session_secret": SESSION_SECRET}


@dataclass(frozen=True)
class Site:
    """The served app, a campaign of "acme" (running) and one of "other"."""

    url: str
    runtime: Runtime
    campaign_id: int
    other_campaign_id: int

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def api(self, method: str, path: str, key: str = KEY, **kw: Any) -> httpx.Response:
        with self.client() as http:
            return http.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)

    def status(self, campaign_id: int | None = None, key: str = KEY) -> str:
        path = f"/v1/campaigns/{campaign_id or self.campaign_id}"
        return str(self.api("GET", path, key).json()["status"])


@pytest.fixture
def site(runtime: Runtime) -> Iterator[Site]:
    with transaction(runtime.settings.database_url) as session:
        give_key(session, account_named(session, "acme"), KEY)
        give_key(session, account_named(session, "other"), OTHER_KEY)
    with serve_app(create_app(runtime)) as url:
        ids = []
        for key in (KEY, OTHER_KEY):
            with httpx.Client(base_url=url, timeout=30) as http:
                created = http.post(
                    "/v1/campaigns",
                    headers={"Authorization": f"Bearer {key}"},
                    data={"name": f"Reminders of {key[9:14]}", "message": "Hello {first_name}"},
                    files={"file": ("a.csv", SAMPLE.read_bytes(), "text/csv")},
                )
            assert created.status_code == 201, created.text
            ids.append(int(created.json()["campaign_id"]))
        site = Site(url, runtime, *ids)
        assert site.api("POST", f"/v1/campaigns/{site.campaign_id}/start").status_code == 200
        yield site


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    """A browser-like client signed in as "acme" (it keeps the session cookie)."""
    with site.client() as client:
        assert sign_in(client, KEY).status_code == 303
        yield client


def session_cookie(response: httpx.Response) -> SimpleCookie:
    cookies = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        cookies.load(header)
    return cookies


# --- sign-in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/campaigns/1"])
def test_a_page_without_a_session_redirects_to_login(site: Site, path: str) -> None:
    with site.client() as http:
        response = http.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path.replace('/', '%2F')}"


def test_the_data_endpoint_without_a_session_is_401_in_the_api_shape(site: Site) -> None:
    with site.client() as http:
        response = http.get(f"/campaigns/{site.campaign_id}/data")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "sign_in_required"


def test_sign_in_sets_a_signed_httponly_strict_cookie_for_12_hours(site: Site) -> None:
    with site.client() as http:
        response = sign_in(http, KEY, next_path=f"/campaigns/{site.campaign_id}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/campaigns/{site.campaign_id}"
    cookie = session_cookie(response)[sessions.SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "strict"
    assert cookie["max-age"] == str(12 * 3600)
    assert cookie["path"] == "/"
    assert KEY not in cookie.value
    signed = sessions.read(site.runtime.settings, cookie.value)
    with transaction(site.runtime.settings.database_url) as session:
        acme_id = account_named(session, "acme").id
    assert signed is not None
    assert signed.account_id == acme_id
    assert len(signed.csrf_token) >= 32


@pytest.mark.parametrize("key", ["not-a-key", "", OTHER_KEY + "x"])
def test_a_wrong_key_shows_the_error_on_the_form_and_sets_nothing(site: Site, key: str) -> None:
    with site.client() as http:
        response = sign_in(http, key)
        assert response.status_code == 401
        assert "unknown or has been revoked" in response.text
        assert 'id="api_key"' in response.text
        assert "set-cookie" not in response.headers
        assert http.get("/").status_code == 303


def test_a_revoked_key_is_refused(site: Site) -> None:
    # A revoked key no longer signs in.
    with transaction(site.runtime.settings.database_url) as session:
        account = account_named(session, "acme")
        for key in list_api_keys(session, account.id):
            revoke_api_key(session, key.id)
    with site.client() as http:
        response = sign_in(http, KEY)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_sign_in_without_the_forms_token_is_refused(site: Site) -> None:
    with site.client() as http:
        token = form_token(http.get("/login").text)
        # Another site's form cannot read our token, and its POST carries no login cookie.
        for data in [{"api_key": KEY}, {"api_key": KEY, "csrf_token": "forged"}]:
            response = http.post("/login", data=data)
            assert response.status_code == 403, data
            assert sessions.SESSION_COOKIE not in session_cookie(response)
    with site.client() as without_the_cookie:
        response = without_the_cookie.post("/login", data={"api_key": KEY, "csrf_token": token})
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_sign_in_only_redirects_within_the_site(site: Site) -> None:
    for target in ["//evil.example/x", "/\\evil.example", "https://evil.example/"]:
        with site.client() as http:
            response = sign_in(http, KEY, next_path=target)
        assert response.headers["location"] == "/", target


def test_a_forged_or_expired_cookie_is_no_session(site: Site) -> None:
    settings = site.runtime.settings
    page_session = sessions.PageSession.new(1, 1)
    good = sessions.sign(settings, page_session)
    assert sessions.read(settings, good) == page_session
    assert sessions.read(settings, good[:-2] + ("AA" if not good.endswith("AA") else "BB")) is None
    other_secret = Settings(session_secret="another-secret-" + "z" * 32)
    assert sessions.read(other_secret, good) is None

    def stamped(age_s: int) -> str:
        class Then(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time()) - age_s

        secret = SESSION_SECRET
        serializer = URLSafeTimedSerializer(secret, salt=sessions._SALT, signer=Then)
        payload = {"account_id": 1, "key_id": 1, "session_id": "s", "csrf_token": "t"}
        return str(serializer.dumps(payload))

    assert sessions.read(settings, stamped(sessions.SESSION_MAX_AGE_S - 60)) is not None
    assert sessions.read(settings, stamped(sessions.SESSION_MAX_AGE_S + 1)) is None
    with site.client() as http:
        http.cookies.set(sessions.SESSION_COOKIE, stamped(sessions.SESSION_MAX_AGE_S + 1))
        assert http.get("/").status_code == 303


def test_logout_needs_the_token_and_clears_the_cookie(site: Site, http: httpx.Client) -> None:
    assert http.post("/logout").status_code == 403
    assert http.get("/").status_code == 200
    token = form_token(http.get("/").text)
    response = http.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert session_cookie(response)[sessions.SESSION_COOKIE]["max-age"] == "0"
    assert http.get("/").status_code == 303


def test_a_cookie_kept_after_logout_signs_nobody_in(site: Site, http: httpx.Client) -> None:
    """Logout ends the session itself, not only the browser's copy of the cookie: one
    copied before (another tab, a stolen cookie) is refused too."""
    kept = http.cookies[sessions.SESSION_COOKIE]
    token = form_token(http.get("/").text)
    assert http.post("/logout", data={"csrf_token": token}).status_code == 303
    with site.client() as replay:
        replay.cookies.set(sessions.SESSION_COOKIE, kept)
        assert replay.get("/").status_code == 303
        data = replay.get(f"/campaigns/{site.campaign_id}/data")
        assert data.status_code == 401
        assert data.json()["error"]["code"] == "sign_in_required"


def test_revoking_the_key_ends_the_sessions_it_signed_in(site: Site, http: httpx.Client) -> None:
    """The key signed the session in: once it is revoked (leaked, its holder gone), the
    page is closed to that session at its next request, the buttons too."""
    token = form_token(http.get("/").text)
    with transaction(site.runtime.settings.database_url) as session:
        account = account_named(session, "acme")
        for key in list_api_keys(session, account.id):
            revoke_api_key(session, key.id)
    assert http.get("/").status_code == 303
    cancel = http.post(f"/campaigns/{site.campaign_id}/cancel", data={"csrf_token": token})
    assert cancel.status_code == 303
    assert cancel.headers["location"].startswith("/login")
    with transaction(site.runtime.settings.database_url) as session:
        assert session.get_one(Campaign, site.campaign_id).status == "running"


def test_without_a_session_secret_sign_in_is_off(site: Site) -> None:
    site.runtime.settings.session_secret = None
    with site.client() as http:
        response = http.get("/login")
    assert response.status_code == 503
    assert "SESSION_SECRET" in response.text


@pytest.mark.parametrize("secret", ["changeme", "secret", "short-but-real"])
def test_a_placeholder_or_short_session_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="SESSION_SECRET"):
        Settings(session_secret=SecretStr(secret))


# --- pages -----------------------------------------------------------------------------------


def test_the_index_lists_the_accounts_campaigns_only(site: Site, http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f'href="/campaigns/{site.campaign_id}"' in response.text
    assert f'href="/campaigns/{site.other_campaign_id}"' not in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_campaign_page_and_its_data(site: Site, http: httpx.Client) -> None:
    page = http.get(f"/campaigns/{site.campaign_id}")
    assert page.status_code == 200
    assert "Reminders of acme" in page.text
    assert f'data-data-url="/campaigns/{site.campaign_id}/data"' in page.text
    for button in ("pause", "cancel"):  # running: what it allows, no more
        assert f'action="/campaigns/{site.campaign_id}/{button}"' in page.text
    assert f'action="/campaigns/{site.campaign_id}/resume"' not in page.text
    assert 'src="/static/vendor/chartjs/chart.umd.min.js"' in page.text
    assert '<tbody id="numbers-body">' in page.text  # number health, filled from the data
    data = http.get(f"/campaigns/{site.campaign_id}/data")
    assert data.status_code == 200
    report = site.api("GET", f"/v1/campaigns/{site.campaign_id}/report").json()
    mine = data.json()
    # The same object; only what depends on the moment it was made may differ.
    for figures in (mine, report):
        figures.pop("generated_at", None)
        figures.get("eta", {}).pop("finish_at", None)
    assert mine == report
    assert [n["number"] for n in mine["numbers"]] == ["+15005550006"]


def _buttons(html: str) -> dict[str, str]:
    """The page's action buttons: `{action: style}`."""
    found = re.findall(r'class="([\w ]+)" id="[\w-]+" data-action="(\w+)"', html)
    return {action: style for style, action in found}


def test_a_completed_campaign_offers_its_results_and_no_resume(
    site: Site, http: httpx.Client
) -> None:
    with transaction(site.runtime.settings.database_url) as session:
        campaign = session.get(Campaign, site.campaign_id)
        assert campaign is not None
        transition(campaign, CampaignAction.COMPLETE, actor=PACER)
    page = http.get(f"/campaigns/{site.campaign_id}")
    assert page.status_code == 200
    assert _buttons(page.text) == {}
    assert f'action="/campaigns/{site.campaign_id}/resume"' not in page.text
    link = re.search(r'<a class="button primary" id="results-button" href="([^"]+)"', page.text)
    assert link, page.text
    results = http.get(link.group(1))
    assert results.status_code == 200
    assert results.headers["content-type"].startswith("text/csv")
    assert results.text == site.api("GET", f"/v1/campaigns/{site.campaign_id}/results.csv").text


@pytest.mark.parametrize(
    ("action", "buttons"),
    [
        ("pause", {"resume": "primary", "cancel": "danger"}),
        ("cancel", {}),
    ],
)
def test_the_page_shows_only_the_actions_the_state_allows_the_next_one_primary(
    site: Site, http: httpx.Client, action: str, buttons: dict[str, str]
) -> None:
    assert site.api("POST", f"/v1/campaigns/{site.campaign_id}/{action}").status_code == 200
    assert _buttons(http.get(f"/campaigns/{site.campaign_id}").text) == buttons
    with site.client() as other:
        sign_in(other, OTHER_KEY)
        page = other.get(f"/campaigns/{site.other_campaign_id}").text
        assert _buttons(page) == {"start": "primary", "cancel": "danger"}
        started = other.post(
            f"/campaigns/{site.other_campaign_id}/start", data={"csrf_token": form_token(page)}
        )
        assert started.status_code == 303
    assert site.status(site.other_campaign_id, OTHER_KEY) == "running"


def test_the_login_page_names_a_cli_command_that_exists(site: Site) -> None:
    with site.client() as http:
        page = http.get("/login").text
    [command] = re.findall(r"<code>([^<]+)</code>", page)
    argv = shlex.split(command)
    assert argv[0] == "dialer", command
    words = [arg for arg in argv[1:] if not arg.startswith("-") and not arg.isupper()]
    options = [arg for arg in argv[1:] if arg.startswith("--")]
    helped = subprocess.run(
        [sys.executable, "-m", "dialer", *words, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert helped.returncode == 0, helped.stderr
    assert f"dialer {' '.join(words)}" in " ".join(helped.stdout.split()), helped.stdout
    for option in options:
        assert option in helped.stdout, (option, helped.stdout)


def test_the_static_files_are_served_with_chart_js_and_its_licence(site: Site) -> None:
    with site.client() as http:
        chart = http.get("/static/vendor/chartjs/chart.umd.min.js")
        licence = http.get("/static/vendor/chartjs/LICENSE.md")
        script = http.get("/static/campaign.js")
        style = http.get("/static/page.css")
    assert chart.status_code == 200
    assert chart.text.startswith("/*!\n * Chart.js v4")
    assert "MIT License" in licence.text
    assert script.status_code == style.status_code == 200


def test_another_accounts_campaign_is_a_404_page(site: Site, http: httpx.Client) -> None:
    page = http.get(f"/campaigns/{site.other_campaign_id}")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "campaign not found" in page.text
    data = http.get(f"/campaigns/{site.other_campaign_id}/data")
    assert data.status_code == 404
    assert data.json()["error"]["code"] == "campaign_not_found"
    token = form_token(http.get("/").text)
    pause = http.post(f"/campaigns/{site.other_campaign_id}/pause", data={"csrf_token": token})
    assert pause.status_code == 404
    assert site.status(site.other_campaign_id, OTHER_KEY) == "draft"


def test_the_buttons_pause_resume_and_cancel(site: Site, http: httpx.Client) -> None:
    path = f"/campaigns/{site.campaign_id}"
    token = form_token(http.get(path).text)
    for action, status in [("pause", "paused"), ("resume", "running"), ("cancel", "canceled")]:
        response = http.post(f"{path}/{action}", data={"csrf_token": token})
        assert response.status_code == 303, (action, response.text)
        assert response.headers["location"] == path
        assert site.status() == status


def test_a_page_post_without_the_csrf_token_is_refused(site: Site, http: httpx.Client) -> None:
    path = f"/campaigns/{site.campaign_id}/pause"
    for data in [{}, {"csrf_token": ""}, {"csrf_token": "forged"}]:
        response = http.post(path, data=data)
        assert response.status_code == 403, data
        assert "CSRF" in response.text
    # Another session's token is not this one's.
    with site.client() as second:
        sign_in(second, KEY)
        other_token = form_token(second.get("/").text)
    assert http.post(path, data={"csrf_token": other_token}).status_code == 403
    assert site.status() == "running"


def test_an_action_the_state_forbids_is_a_409_page(site: Site, http: httpx.Client) -> None:
    path = f"/campaigns/{site.campaign_id}"
    response = http.post(f"{path}/resume", data={"csrf_token": form_token(http.get(path).text)})
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("text/html")
    assert site.status() == "running"


def test_the_v1_api_never_takes_the_session_cookie(site: Site, http: httpx.Client) -> None:
    path = f"/v1/campaigns/{site.campaign_id}"
    cookie = http.cookies.get(sessions.SESSION_COOKIE)
    assert cookie
    token = form_token(http.get("/").text)
    for action in ("pause", "cancel"):
        response = http.post(f"{path}/{action}", data={"csrf_token": token})
        assert response.status_code == 401, action
        assert response.json()["error"]["code"] == "unauthenticated"
    assert http.get(path).status_code == 401
    assert site.status() == "running"
