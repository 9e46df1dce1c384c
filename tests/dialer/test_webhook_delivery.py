"""Delivering webhook events to a real receiver (an HTTP server in a thread): retries with
backoff, one event id across tries, signatures, 410, dead letters, redirects, the SSRF
rule at delivery time, a slow receiver not holding up the others, hostile answers (a gzip
bomb, a dripped answer) bounded, one account's deliveries capped, and a poisoned event
recorded on itself."""

from __future__ import annotations

import resource
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from dialer.errors import DialerError
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.webhooks.delivery import (
    SWEEP_LOCK_KEY,
    Claimed,
    TryResult,
    deliver,
    next_status,
    pinned_request,
    sweep,
)
from dialer.webhooks.events import EventType, new_event
from dialer.webhooks.outbox import add_events
from dialer.webhooks.signing import HEADER, verify_signature
from models import Account, WebhookEvent, WebhookStatus, transaction, utcnow
from tests.factories import make_account
from tests.receiver import BOMB_MIB, Receiver, dripping_status_line
from tests.servers import serve_app
from tests.support import wait_until

MAX_TRIES = 4


@pytest.fixture
def runtime_settings() -> dict[str, Any]:
    return {
        "webhook_allow_private_networks": True,  # the receiver is on loopback
        "webhook_retry_base_s": 0.05,
        "webhook_retry_cap_s": 0.2,
        "webhook_max_attempts": MAX_TRIES,
        "webhook_timeout_s": 1.0,
    }


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    with serve_app(app) as base:
        yield app, base


def write_event(settings: Settings, url: str, account: str = "acme") -> str:
    """One committed `call.completed` event for `url` (of `account`, created if new); its
    event id."""
    event = new_event(EventType.CALL_COMPLETED, {"call_id": 1, "metadata": {}}, utcnow())
    with transaction(settings.database_url) as session:
        owner = session.scalar(select(Account).where(Account.name == account))
        owner = owner or make_account(session, account, webhook_url=url)
        add_events(session, owner.id, url, [event])
    return event.event_id


def row(settings: Settings, event_id: str) -> WebhookEvent:
    with transaction(settings.database_url) as session:
        return session.scalars(select(WebhookEvent).where(WebhookEvent.event_id == event_id)).one()


def drive(runtime: Runtime, event_id: str, timeout_s: float = 20) -> WebhookEvent:
    """Sweep (as beat does) until the event is no longer pending."""

    def settled() -> bool:
        sweep(runtime)
        return row(runtime.settings, event_id).status is not WebhookStatus.PENDING

    wait_until(settled, timeout_s, "the event to settle")
    return row(runtime.settings, event_id)


def secret_of(settings: Settings, account: str = "acme") -> str:
    with transaction(settings.database_url) as session:
        stored = session.scalar(select(Account.webhook_secret).where(Account.name == account))
    assert stored is not None
    return stored


def test_failed_tries_are_retried_with_one_event_id_and_valid_signatures(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    settings = runtime.settings
    app.answer("/hook", 500, 503)
    event_id = write_event(settings, base + "/hook")
    assert deliver(runtime, event_id) is WebhookStatus.PENDING  # the first try: 500
    first = row(settings, event_id)
    assert (first.attempts, first.last_status_code, first.last_error) == (1, 500, "HTTP 500")
    # Backoff with full jitter: the retry is due within the first cap (0.05 s here).
    assert first.next_attempt_at <= utcnow() + timedelta(seconds=0.05)
    assert deliver(runtime, event_id) in (None, WebhookStatus.PENDING)
    final = drive(runtime, event_id)
    assert final.status is WebhookStatus.DELIVERED
    assert final.attempts == 3
    assert final.last_status_code == 200
    assert final.delivered_at is not None
    tries = app.at("/hook")
    assert len(tries) == 3
    secret = secret_of(settings)
    for received in tries:
        assert received.event["id"] == event_id  # the same id on every try
        assert received.headers["dialer-event-id"] == event_id
        assert received.headers["content-type"] == "application/json"
        assert received.body.decode() == final.body
        assert verify_signature(secret, received.headers[HEADER.lower()], received.body)
        assert not verify_signature("whsec_wrong", received.headers[HEADER.lower()], received.body)
    # Delivered: nothing is sent again.
    sweep(runtime)
    assert len(app.at("/hook")) == 3


def test_after_the_last_try_the_event_is_dead_lettered(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    app.default = 500
    event_id = write_event(runtime.settings, base + "/down")
    deliver(runtime, event_id)
    final = drive(runtime, event_id)
    assert final.status is WebhookStatus.DEAD
    assert final.attempts == MAX_TRIES
    assert len(app.at("/down")) == MAX_TRIES
    assert {r.event["id"] for r in app.at("/down")} == {event_id}
    sweep(runtime)
    assert len(app.at("/down")) == MAX_TRIES


def test_410_stops_for_good(runtime: Runtime, receiver: tuple[Receiver, str]) -> None:
    app, base = receiver
    app.answer("/gone", 410)
    event_id = write_event(runtime.settings, base + "/gone")
    assert deliver(runtime, event_id) is WebhookStatus.FAILED
    sweep(runtime)
    assert len(app.at("/gone")) == 1
    assert row(runtime.settings, event_id).last_status_code == 410


def test_a_redirect_is_not_followed_and_counts_as_a_failed_try(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    app.answer("/moved", 302)
    event_id = write_event(runtime.settings, base + "/moved")
    assert deliver(runtime, event_id) is WebhookStatus.PENDING
    stored = row(runtime.settings, event_id)
    assert stored.last_status_code == 302
    assert stored.last_error == "redirect to '/elsewhere' not followed"
    assert app.at("/elsewhere") == []
    assert drive(runtime, event_id).status is WebhookStatus.DELIVERED
    assert app.at("/elsewhere") == []


def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    strict = runtime.settings.model_copy(update={"webhook_allow_private_networks": False})
    strict_runtime = Runtime(strict)
    # The URL was accepted when it was set (say it resolved to a public address then); at
    # delivery `localhost` resolves to 127.0.0.1, so nothing is sent.
    port = base.rsplit(":", 1)[1]
    event_id = write_event(strict, f"http://localhost:{port}/inside")
    assert deliver(strict_runtime, event_id) is WebhookStatus.PENDING
    stored = row(strict, event_id)
    assert stored.last_status_code is None
    assert stored.last_error is not None
    assert stored.last_error.startswith(
        "webhook_url_not_allowed: webhook host localhost resolves to a non-public address"
    )
    assert drive(strict_runtime, event_id).status is WebhookStatus.DEAD
    assert app.requests == []


def test_a_stored_url_on_a_refused_port_is_not_sent_to_at_delivery(runtime: Runtime) -> None:
    # Stored before the port rule (private networks allowed here, as in development): at
    # delivery the rule still holds, so nothing connects to SSH.
    event_id = write_event(runtime.settings, "http://127.0.0.1:22/hook")
    assert deliver(runtime, event_id) is WebhookStatus.PENDING
    stored = row(runtime.settings, event_id)
    assert stored.last_status_code is None
    assert stored.last_error is not None
    assert "port 22 is not allowed" in stored.last_error


@pytest.mark.parametrize(
    "host",
    ["[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[::7f00:1]", "[fec0::1]", "[::ffff:127.0.0.1]"],
)
def test_ipv6_forms_of_inside_addresses_are_refused_at_delivery(host: str) -> None:
    with pytest.raises(DialerError) as raised:
        pinned_request(f"http://{host}:8080/hook", False)
    assert raised.value.code == "webhook_url_not_allowed"


def test_the_connection_goes_to_the_resolved_address_with_the_name_kept() -> None:
    url, headers, extensions = pinned_request("https://localhost:8443/hook?x=1", True)
    assert str(url) == "https://127.0.0.1:8443/hook?x=1"
    assert headers == {"Host": "localhost:8443"}
    assert extensions == {"sni_hostname": "localhost"}  # TLS: SNI and certificate name
    url, headers, extensions = pinned_request("http://localhost/hook", True)
    assert (str(url), headers, extensions) == ("http://127.0.0.1/hook", {"Host": "localhost"}, {})


def test_a_pinned_delivery_keeps_the_host_header(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    port = base.rsplit(":", 1)[1]
    event_id = write_event(runtime.settings, f"http://localhost:{port}/named")
    assert deliver(runtime, event_id) is WebhookStatus.DELIVERED
    assert app.at("/named")[0].headers["host"] == f"localhost:{port}"


def test_a_slow_receiver_does_not_hold_up_other_deliveries(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    app.slow["/slow"] = 3.0  # past the 1 s timeout
    slow = write_event(runtime.settings, base + "/slow")
    fast = write_event(runtime.settings, base + "/fast", account="other")
    assert sweep(runtime) == 2
    assert row(runtime.settings, fast).status is WebhookStatus.DELIVERED
    timed_out = row(runtime.settings, slow)
    assert timed_out.status is WebhookStatus.PENDING
    assert timed_out.last_error == "timeout after 1 s"
    # Both were sent together: the fast one did not wait for the slow one's timeout.
    assert abs(app.at("/fast")[0].at - app.at("/slow")[0].at) < 0.9


def claimed(attempts: int, age_s: float = 0) -> Claimed:
    return Claimed(
        1, "evt_x", 1, "https://x.test", "{}", attempts, utcnow() - timedelta(seconds=age_s)
    )


def test_the_retry_schedule_with_the_default_settings() -> None:
    settings = Settings()
    now = utcnow()
    failed = TryResult(500, "HTTP 500")
    # The first retry within 10 s (8 s of jitter, plus up to one 2 s beat sweep).
    for _ in range(200):
        status, due = next_status(claimed(1), failed, settings, now)
        assert status is WebhookStatus.PENDING
        assert due is not None and now <= due <= now + timedelta(seconds=8)
    # At least ten tries: the first nine waits' caps sum to well under 24 h.
    caps = [min(settings.webhook_retry_cap_s, 8 * 2 ** (n - 1)) for n in range(1, 10)]
    assert sum(caps) < 3 * 3600
    assert settings.webhook_max_attempts >= 10
    # The last try dead-letters; so does a retry that would fall past the 24 h window.
    dead = next_status(claimed(settings.webhook_max_attempts), failed, settings, now)
    assert dead == (WebhookStatus.DEAD, None)
    late = claimed(3, age_s=24 * 3600)
    results = {next_status(late, failed, settings, now)[0] for _ in range(50)}
    assert results == {WebhookStatus.DEAD}
    assert next_status(claimed(2), TryResult(204), settings, now) == (
        WebhookStatus.DELIVERED,
        None,
    )
    assert next_status(claimed(2), TryResult(410), settings, now)[0] is WebhookStatus.FAILED
    assert next_status(claimed(2), TryResult(None, "timeout"), settings, now)[0] is (
        WebhookStatus.PENDING
    )


def test_one_sweep_at_a_time(runtime: Runtime, receiver: tuple[Receiver, str]) -> None:
    app, base = receiver
    event_id = write_event(runtime.settings, base + "/hook")
    runtime.redis.set(SWEEP_LOCK_KEY, "another sweep", px=60_000)
    assert sweep(runtime) is None  # another sweep runs: this one leaves the work to it
    assert app.requests == []
    runtime.redis.delete(SWEEP_LOCK_KEY)
    assert sweep(runtime) == 1
    assert row(runtime.settings, event_id).status is WebhookStatus.DELIVERED
    assert runtime.redis.get(SWEEP_LOCK_KEY) is None  # released


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_gzip_bomb_answer_is_delivered_without_being_unpacked(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    app.bombs.add("/bomb")  # 200, and a body that unpacks to 1 GiB
    event_id = write_event(runtime.settings, base + "/bomb")
    before = peak_rss_mib()
    assert deliver(runtime, event_id) is WebhookStatus.DELIVERED
    assert peak_rss_mib() - before < BOMB_MIB / 16  # a few KiB read, nothing unpacked
    assert app.at("/bomb")[0].headers["accept-encoding"] == "identity"


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    # A byte every 0.2 s: no single read waits the 1 s timeout, the whole answer takes 4 s.
    app.drip["/drip"] = 0.2
    event_id = write_event(runtime.settings, base + "/drip")
    assert deliver(runtime, event_id) is WebhookStatus.PENDING
    stored = row(runtime.settings, event_id)
    assert (stored.last_status_code, stored.last_error) == (None, "timeout after 1 s")


def test_a_receiver_that_drips_its_status_line_is_cut_off_at_the_deadline(
    runtime: Runtime,
) -> None:
    with dripping_status_line(0.2) as base:  # 20 bytes, never a whole status line
        event_id = write_event(runtime.settings, base + "/drip")
        assert deliver(runtime, event_id) is WebhookStatus.PENDING
    stored = row(runtime.settings, event_id)
    assert (stored.last_status_code, stored.last_error) == (None, "timeout after 1 s")


def test_an_account_at_its_delivery_cap_is_deferred_and_other_accounts_go_on(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    # A's try holds its slot until its 4 s deadline: room for the checks below while it hangs.
    capped = Runtime(
        runtime.settings.model_copy(
            update={"webhook_account_concurrency": 1, "webhook_timeout_s": 4.0}
        )
    )
    app.slow["/a/hangs"] = 6.0
    hanging = write_event(capped.settings, base + "/a/hangs", account="a")
    waiting = write_event(capped.settings, base + "/a/later", account="a")
    other = write_event(capped.settings, base + "/b", account="b")
    first = threading.Thread(target=deliver, args=(capped, hanging))
    first.start()
    try:
        wait_until(lambda: bool(app.at("/a/hangs")), 10, "A's first try to reach its receiver")
        # A's one slot is taken: its next event is deferred, untried and uncounted...
        assert deliver(capped, waiting) is None
        deferred = row(capped.settings, waiting)
        assert (deferred.status, deferred.attempts) == (WebhookStatus.PENDING, 0)
        assert deferred.next_attempt_at > utcnow()
        assert app.at("/a/later") == []
        # ...and B's event goes out at once, while A's receiver still hangs.
        assert deliver(capped, other) is WebhookStatus.DELIVERED
        assert first.is_alive()
    finally:
        first.join(10)
    assert row(capped.settings, hanging).last_error == "timeout after 4 s"
    # Once A's slot is free, its deferred event is delivered by the sweep.
    assert drive(capped, waiting).status is WebhookStatus.DELIVERED
    assert row(capped.settings, waiting).attempts == 1


def test_a_poisoned_event_is_recorded_on_itself_and_the_sweep_goes_on(
    runtime: Runtime, receiver: tuple[Receiver, str]
) -> None:
    app, base = receiver
    fine = [write_event(runtime.settings, f"{base}/ok/{n}", account=f"ok{n}") for n in range(3)]
    # A stored URL nothing can send to (written before the URL rules, or by hand): the try
    # raises while preparing the request.
    poisoned = write_event(runtime.settings, "http://[::1/hook", account="poisoned")
    assert sweep(runtime) == 4
    assert {row(runtime.settings, e).status for e in fine} == {WebhookStatus.DELIVERED}
    tried = row(runtime.settings, poisoned)
    assert tried.status is WebhookStatus.PENDING
    assert tried.attempts == 1
    assert tried.last_error is not None and "not a valid URL" in tried.last_error
    # Retried by its own policy, then dead-lettered; nothing else was held up.
    final = drive(runtime, poisoned)
    assert (final.status, final.attempts) == (WebhookStatus.DEAD, MAX_TRIES)
    assert len(app.requests) == 3
