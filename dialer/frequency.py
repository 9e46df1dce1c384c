"""Per-number frequency caps over rolling periods: "at most N calls to one number in any D
days", one or more per account (`Account.frequency_caps`), across all of the account's
campaigns and single calls.

Sources: FCC 20-186 (exempt prerecorded calls to a residential line: 3 in 30 days;
HIPAA-covered health calls: 1 a day and 3 a week); Amazon Connect's per-recipient
communication limits ("4 per 2 days and 6 per 14 days") are the model of the shape.

A call counts from the moment its attempt is created (the pacer's claim) if it may have rung
the number: every attempt but a `not-placed` one. A period of D days is the trailing
D x 24 hours. A number over a cap may be called again once its N-th most recent call leaves
that cap's period; a number over several is held until all of them allow it (the latest of
those moments), not failed.

Cost: `recent_calls` is one statement per batch of numbers: per number, one descent of
`ix_call_attempts_number` (account, number, created_at) read backwards from `now`, stopping
after the largest N of the caps or at the longest period, whichever comes first: at most
max(N) index entries and heap rows per number, whatever the account's history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, func, literal, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from models import AttemptStatus, CallAttempt

DEFAULT_CAPS: tuple[tuple[int, int], ...] = ((3, 1),)
"""A new account's limits, (calls, days): 3 calls a day (the per-day cap this replaces)."""


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `calls` calls to one number in any `days` days (trailing `days` x 24 h)."""

    calls: int
    days: int

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.days)

    def label(self) -> str:
        """`3 per 30 days`, as messages and the CLI say it."""
        return f"{self.calls} per {self.days} day{'s' if self.days != 1 else ''}"


def caps_of(stored: Sequence[Mapping[str, Any]]) -> tuple[Cap, ...]:
    """The account's stored limits (`Account.frequency_caps`, written through
    `campaigns.options.FrequencyCap`) as `Cap`s."""
    return tuple(Cap(int(c["calls"]), int(c["days"])) for c in stored)


def recent_calls(
    session: Session,
    account_id: int,
    phones: Sequence[str],
    now: datetime,
    caps: Sequence[Cap],
) -> dict[str, list[datetime]]:
    """Per number: the creation times of its attempts that may have rung it (not
    `not-placed`) across the account, newest first, at most the largest `calls` of `caps`
    and none older than the longest period before `now` (nor after `now`). Numbers with
    none are absent. One statement (see the module's cost)."""
    if not phones or not caps:
        return {}
    longest = max(cap.period for cap in caps)
    most = max(cap.calls for cap in caps)
    numbers = select(
        func.unnest(literal(sorted(set(phones)), ARRAY(String))).label("phone")
    ).subquery("numbers")
    recent = (
        select(CallAttempt.created_at)
        .where(
            CallAttempt.account_id == account_id,
            CallAttempt.phone_e164 == numbers.c.phone,
            CallAttempt.created_at > now - longest,
            CallAttempt.created_at <= now,
            CallAttempt.status != AttemptStatus.NOT_PLACED,
        )
        .order_by(CallAttempt.created_at.desc())
        .limit(most)
        .lateral("recent")
    )
    out: dict[str, list[datetime]] = {}
    for phone, created_at in session.execute(
        select(numbers.c.phone, recent.c.created_at)
        .join(recent, true())
        .order_by(numbers.c.phone, recent.c.created_at.desc())
    ):
        out.setdefault(phone, []).append(created_at)
    return out


def free_at(caps: Sequence[Cap], calls: Sequence[datetime], now: datetime) -> datetime | None:
    """When every cap lets the number be called again, given its recent calls (`calls`,
    newest first, as `recent_calls` gives them); None if all let it be called at `now`.

    A cap of N in D days holds the number while its N-th most recent call is less than D
    days old, until that call is D days old."""
    held = [
        calls[cap.calls - 1] + cap.period
        for cap in caps
        if len(calls) >= cap.calls and calls[cap.calls - 1] + cap.period > now
    ]
    return max(held, default=None)
