"""The request path is bounded before the app reads a body: the body's size (413
`body_too_large`), the API key (401 before an upload is read), the key's rate (429
`rate_limited` with `Retry-After`), and the key's `last_used_at` is written outside the
request's transaction."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text

from dialer.runtime import Runtime
from dialer.web.app import create_app
from models import Account, engine_for, transaction
from tests.factories import make_campaign
from tests.servers import serve_app
from tests.web.support import KEY, OTHER_KEY, Api, error_code
from tests.web.test_schedules_api import create as create_schedule


@contextmanager
def served(api: Api, **settings: Any) -> Iterator[httpx.Client]:
    """The app on `api`'s database and Redis with `settings` changed."""
    runtime = Runtime(api.runtime.settings.model_copy(update=settings))
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def raw_exchange(base_url: str, request: bytes, *, timeout: float = 10) -> tuple[int, bytes]:
    """Send `request` (head and what part of the body it has) on a plain socket and read
    the reply's status and head, without sending anything more."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1]), head


def test_a_json_body_past_the_bound_is_refused_413_unread(api: Api) -> None:
    response = api.post("/v1/calls", json={"to_number": "+14155550100", "message": "x" * 70_000})
    assert error_code(response, 413) == "body_too_large"


def test_a_streamed_callback_body_is_cut_at_the_bound_before_its_signature(api: Api) -> None:
    # Chunked, no Content-Length: counted as it streams; the signature is never checked.
    chunk = b"Digits=" + b"1" * 100_000
    request = (
        b"POST /v1/providers/twilio/status/1 HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(chunk):x}\r\n".encode()
        + chunk
        + b"\r\n"
    )
    status, head = raw_exchange(str(api.http.base_url), request)
    assert status == 413, head


def test_an_upload_past_the_upload_bound_is_refused_413(api: Api) -> None:
    with served(api, upload_max_bytes=4096) as http:
        big = b"phone\n" + b"+14155550100\n" * 1000
        response = http.post(
            "/v1/campaigns",
            headers={"Authorization": f"Bearer {KEY}"},
            data={"name": "big", "message": "Hello"},
            files={"file": ("big.csv", big, "text/csv")},
        )
    assert error_code(response, 413) == "body_too_large"
    assert api.campaign_count() == 0


def test_an_unauthenticated_upload_is_refused_401_before_its_body_is_read(api: Api) -> None:
    # 400 MB announced, a few bytes sent: the 401 comes without waiting for the rest.
    for auth in (b"", b"Authorization: Bearer dk_nobody\r\n"):
        request = (
            b"POST /v1/campaigns HTTP/1.1\r\nHost: test\r\n" + auth + b"Content-Type: "
            b"multipart/form-data; boundary=xyz\r\nContent-Length: 400000000\r\n\r\n"
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
            b"phone\n+14155550100\n"
        )
        status, head = raw_exchange(str(api.http.base_url), request, timeout=5)
        assert status == 401, head


def test_a_key_over_its_rate_is_refused_429_with_retry_after(api: Api) -> None:
    with served(api, rate_limit_per_s=0.01, rate_limit_burst=3) as http:
        acme = {"Authorization": f"Bearer {KEY}"}
        assert [http.get("/v1/account", headers=acme).status_code for _ in range(3)] == [200] * 3
        refused = http.get("/v1/account", headers=acme)
        other = http.get("/v1/account", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert error_code(refused, 429) == "rate_limited"
    assert 90 <= int(refused.headers["Retry-After"]) <= 100
    assert other.status_code == 200


def test_a_request_holding_its_transaction_does_not_hold_up_its_keys_other_requests(
    api: Api,
) -> None:
    url = api.runtime.settings.database_url
    with transaction(url) as session:
        campaign_id = make_campaign(session, session.get_one(Account, api.account_id)).id
    engine = engine_for(url)
    with engine.connect() as locker:
        # A request of the key that holds its transaction open: waiting on this row lock.
        locker.execute(
            text("SELECT id FROM campaigns WHERE id = :id FOR UPDATE"), {"id": campaign_id}
        )
        held = threading.Thread(target=api.post, args=(f"/v1/campaigns/{campaign_id}/pause",))
        held.start()
        try:
            deadline = time.monotonic() + 30
            with engine.connect() as watcher:
                while time.monotonic() < deadline and not watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                ):
                    watcher.rollback()
            other = api.http.get("/v1/account", headers=api.headers(), timeout=5)
            assert other.status_code == 200
        finally:
            locker.rollback()
            held.join(30)


def test_contacts_pushed_to_a_schedule_may_pass_the_json_bound_up_to_10_mib(api: Api) -> None:
    schedule_id = create_schedule(api)
    path = f"/v1/schedules/{schedule_id}/contacts"
    contacts = [{"phone": f"+1202555{i:04d}", "first_name": "Ada" * 10} for i in range(2000)]
    pushed = api.post(path, json={"contacts": contacts})
    assert pushed.status_code == 201, pushed.text
    too_big = api.post(
        path, content=b"phone\n" + b"+12025550101\n" * 900_000, headers={"Content-Type": "text/csv"}
    )
    assert error_code(too_big, 413) == "body_too_large"


def test_redis_down_is_a_503_with_retry_after_not_a_500(api: Api) -> None:
    """The rate limiter (and the pool, the page sessions) live in Redis: with Redis gone a
    request is refused 503 `redis_unavailable`, to be sent again, never a 500."""
    with served(api, redis_url="redis://127.0.0.1:1/0") as http:
        refused = http.get("/v1/account", headers={"Authorization": f"Bearer {KEY}"})
    assert error_code(refused, 503) == "redis_unavailable"
    assert refused.headers["Retry-After"] == "1"
