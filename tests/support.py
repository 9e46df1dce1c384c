"""Helpers shared by test modules: waiting on a condition, leases, captured logs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from structlog.contextvars import merge_contextvars
from structlog.testing import LogCapture
from structlog.typing import EventDict

from dialer import numbers
from dialer.pool.leases import (
    ProviderLimits,
    acquire_scopes,
    caller_id_slot,
    lease_seconds,
    rate_limits,
)
from dialer.runtime import Runtime
from models import Account, CallAttempt, CallerId, Campaign, transaction

METRICS_TOKEN = "metrics-token-for-the-tests-" + "m" * 16  # a test value
"""The `/metrics` bearer token of the apps the tests serve with metrics on."""


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Poll `predicate` until it holds; fail after `timeout_s` seconds.

    Polls every 5 ms at first, backing off to every 100 ms, so a quick condition is seen at
    once and a slow one (a database query, an HTTP request) does not load a shared machine.
    """
    deadline = time.monotonic() + timeout_s
    interval = 0.005
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, 0.1)


def hold_lease(runtime: Runtime, attempt_id: int) -> None:
    """Take the attempt's lease in every pool scope of its campaign, as the pacer does."""
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        account = session.get_one(Account, attempt.account_id)
        campaign = session.get_one(Campaign, attempt.campaign_id)
        caller_id = session.get_one(CallerId, campaign.caller_id_id)
        provider = ProviderLimits.of(runtime.settings)
        runtime.pool.acquire(
            str(attempt.id),
            lease_seconds(campaign),
            [*acquire_scopes(account, campaign, provider), caller_id_slot(caller_id).scope],
            rate_limits(account, campaign, provider),
        )


@contextmanager
def captured_logs() -> Iterator[list[EventDict]]:
    """Every structlog entry written in the block, with the context-local (contextvars)
    context merged in, from any thread. (`structlog.testing.capture_logs` leaves the
    contextvars out before structlog 25.5.)"""
    capture = LogCapture()
    processors = structlog.get_config()["processors"]
    saved = processors.copy()
    # Mutated in place: loggers already bound keep a reference to this list.
    processors[:] = [merge_contextvars, capture]
    structlog.configure(processors=processors)
    try:
        yield capture.entries
    finally:
        processors[:] = saved
        structlog.configure(processors=processors)


DAYTIME_CANDIDATES = (
    "+447386172392",  # London
    "+12125550143",  # New York
    "+13105550143",  # Los Angeles
    "+18085550143",  # Honolulu
    "+919876543210",  # India
    "+81312345678",  # Tokyo
    "+61291234567",  # Sydney
)
"""Valid numbers whose zones are spread round the clock: at any moment one of them is in
the middle of the default calling window (no two neighbours more than 5.5 h apart)."""


def daytime_number(now: datetime | None = None) -> str:
    """A number whose every zone reads between 10:00 and 17:00 at `now` (default: now), so
    a single call to it is inside the default window (09:00-20:00) for the next 3 hours."""
    moment = now or datetime.now(UTC)
    for number in DAYTIME_CANDIDATES:
        hours = {moment.astimezone(ZoneInfo(z)).hour for z in numbers.timezones_for(number)}
        if all(10 <= hour < 17 for hour in hours):
            return number
    raise AssertionError(f"no candidate number is in its daytime at {moment}")


POISONED_POLICY = {"busy": {"retry": True, "delay_s": "x"}}
"""A retry matrix stored before any check held it (old data: `delay_s` not a number)."""


def poison_retry_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the state machine raise on `POISONED_POLICY`, as the untyped reader did
    (`float("x")`) before `dialer.calls.retry_delay` read the matrix typed: the fault a
    shared loop must survive, injected so its isolation stays tested now that stored data
    no longer triggers it."""
    from dialer.dispatch import attempt_end

    typed = attempt_end.retry_delay

    def untyped(policy: Any, max_attempts: int, outcome: Any, attempts_made: int) -> Any:
        if policy == POISONED_POLICY:
            raise ValueError("could not convert string to float: 'x'")
        return typed(policy, max_attempts, outcome, attempts_made)

    monkeypatch.setattr(attempt_end, "retry_delay", untyped)
