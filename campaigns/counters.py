"""The campaign counters the report reads instead of counting a million rows.

Triggers on `call_jobs` and `call_attempts` (migration 0009) keep two tables current in
the transaction that changes a contact or an attempt, whichever code path changes it (the
webhook's raw-SQL fast path, the ORM, a bulk cancel, a COPY):

- `campaign_counters`: (campaign, name) -> value, summed over stripes. Names:
  `contacts.total`, `contacts.<state>` (state: `fresh` = pending and never attempted,
  `retry` = pending again after an attempt, `in_progress`, `done`, `expired`,
  `canceled`), `contacts.attempted` (contacts with an attempt that may have rung them),
  `contacts.attempt_sum` (those attempts), `outcome.<outcome>` (done contacts),
  `outcome.machine.<AnsweredBy>`, `outcome.failed.<error code or none>`;
  `attempts.total`, `attempts.pre` (dialing or placing), `attempts.live` (a provider call
  not yet ended), `attempts.placed` (attempts that became a provider call),
  `attempts.late` (late calls hung up), `attempts.answered`, `attempts.human`,
  `attempts.digits.1` / `.2` (DTMF replies), `talk.calls`, `talk.seconds`,
  `talk.billable_minutes` (each call rounded up to the minute, as Twilio bills),
  `talk.b.<i>` (talk-time histogram, `TALK_BOUNDS`), `hold.calls`, `hold.seconds` (placed
  to ended), `due.b.<i>` (due-to-dial delay histogram, `DELAY_BOUNDS`).
- `campaign_minutes`: per UTC minute, calls placed (`dials`), answered, ended, and
  contacts never attempted that fall due in it (`due`).

Each row's contribution is a pure function of the row (the facts of migration 0009, named
by the SQL functions `dialer_job_counts` and `dialer_attempt_counts`), so `recount`
recomputes every counter from scratch with the same SQL (`dialer_recount`,
`dialer_recount_minutes`): the check that the triggers missed nothing, and the backfill of
`bench/report.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

TALK_BOUNDS = (
    0,
    5,
    10,
    15,
    20,
    30,
    45,
    60,
    90,
    120,
    180,
    240,
    300,
    420,
    600,
    900,
    1200,
    1800,
    3600,
)
"""Lower bounds (seconds) of the talk-time histogram's buckets `talk.b.1` ... (the last one
is open-ended). Must equal the array in migration 0009."""
DELAY_BOUNDS = (0, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
"""Lower bounds (seconds) of the due-to-dial delay histogram's buckets `due.b.1` ...
Must equal the array in migration 0009."""


@dataclass(frozen=True, slots=True)
class Minute:
    """One minute of a campaign: calls placed, answered and ended in it, and contacts never
    attempted that fall due in it."""

    dials: int = 0
    answers: int = 0
    ends: int = 0
    due: int = 0


_READ = text(
    """
SELECT name, NULL::timestamptz, sum(value), 0, 0, 0 FROM campaign_counters
WHERE campaign_id = :c GROUP BY name HAVING sum(value) <> 0
UNION ALL
SELECT NULL, minute, sum(dials), sum(answers), sum(ends), sum(due) FROM campaign_minutes
WHERE campaign_id = :c AND minute >= :since GROUP BY minute
"""
)


def read(
    session: Session, campaign_id: int, since: datetime
) -> tuple[dict[str, int], dict[datetime, Minute]]:
    """The campaign's counters (names in the module docstring; absent means 0) and its
    minutes from `since` (a UTC minute) on, future ones included (a contact due later),
    each summed over stripes, in one round trip; minutes with nothing are left out."""
    counts: dict[str, int] = {}
    by_minute: dict[datetime, Minute] = {}
    for name, minute, value, answers, ends, due in session.execute(
        _READ, {"c": campaign_id, "since": since}
    ):
        if name is not None:
            counts[name] = int(value)
        elif value or answers or ends or due:
            by_minute[minute.astimezone(UTC)] = Minute(
                int(value), int(answers), int(ends), int(due)
            )
    return counts, by_minute


def recount(session: Session, campaign_id: int) -> tuple[dict[str, int], dict[datetime, Minute]]:
    """Every counter and minute of the campaign computed from scratch over its contacts and
    attempts (a full scan: for checks and backfills, never for a report)."""
    counts = {
        name: int(value)
        for name, value in session.execute(
            text("SELECT * FROM dialer_recount(:c)"), {"c": campaign_id}
        )
    }
    rows = session.execute(text("SELECT * FROM dialer_recount_minutes(:c)"), {"c": campaign_id})
    by_minute = {
        minute.astimezone(UTC): Minute(int(d), int(a), int(e), int(due))
        for minute, d, a, e, due in rows
    }
    return counts, by_minute


def backfill(session: Session, campaign_id: int) -> None:
    """Replace the campaign's counters with `recount`'s (stripe 0): for rows loaded with
    the triggers off (`session_replication_role = replica`, as `bench/report.py` does)."""
    session.execute(
        text("DELETE FROM campaign_counters WHERE campaign_id = :c"), {"c": campaign_id}
    )
    session.execute(text("DELETE FROM campaign_minutes WHERE campaign_id = :c"), {"c": campaign_id})
    session.execute(
        text(
            "INSERT INTO campaign_counters (campaign_id, name, stripe, value)"
            " SELECT :c, name, 0, value FROM dialer_recount(:c)"
        ),
        {"c": campaign_id},
    )
    session.execute(
        text(
            "INSERT INTO campaign_minutes (campaign_id, minute, stripe, dials, answers, ends, due)"
            " SELECT :c, minute, 0, dials, answers, ends, due FROM dialer_recount_minutes(:c)"
        ),
        {"c": campaign_id},
    )


def fold(session: Session) -> int:
    """Fold the stripes of database backends that are gone into stripe 0, so a report sums
    few rows; returns the counter rows folded into (0 when another fold is running)."""
    return int(session.execute(text("SELECT dialer_fold_counters()")).scalar_one())


def percentile(
    counts: dict[str, int], prefix: str, bounds: tuple[float, ...], q: float
) -> float | None:
    """The `q` quantile (0..1) of a histogram kept as counters `<prefix><i>` over buckets
    with lower bounds `bounds` (bucket i covers [bounds[i-1], bounds[i])), interpolated
    linearly inside its bucket (as Prometheus' `histogram_quantile` does); the open last
    bucket answers its lower bound. None when the histogram is empty."""
    buckets = [counts.get(f"{prefix}{i}", 0) for i in range(1, len(bounds) + 1)]
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            if i + 1 == len(bounds):
                return float(bounds[i])
            low, high = bounds[i], bounds[i + 1]
            return float(low + (high - low) * (rank - seen) / n)
        seen += n
    return float(bounds[-1])
