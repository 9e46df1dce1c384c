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

Each row's contribution is a pure function of the row (SQL functions `dialer_job_counts`,
`dialer_attempt_counts`, `dialer_attempt_minutes`, `dialer_job_minutes`), so `recount`
recomputes every counter from scratch with the same functions: the check that the
triggers missed nothing, and the backfill of `bench/report.py`.
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


def totals(session: Session, campaign_id: int) -> dict[str, int]:
    """Every counter of the campaign (names in the module docstring); absent means 0."""
    rows = session.execute(
        text(
            "SELECT name, sum(value) FROM campaign_counters WHERE campaign_id = :c"
            " GROUP BY name HAVING sum(value) <> 0"
        ),
        {"c": campaign_id},
    )
    return {name: int(value) for name, value in rows}


def minutes(session: Session, campaign_id: int, since: datetime) -> dict[datetime, Minute]:
    """The campaign's minutes from `since` (a UTC minute) on, future ones included (a
    contact due later), each summed over stripes; minutes with nothing are left out."""
    rows = session.execute(
        text(
            "SELECT minute, sum(dials), sum(answers), sum(ends), sum(due)"
            " FROM campaign_minutes WHERE campaign_id = :c AND minute >= :since"
            " GROUP BY minute ORDER BY minute"
        ),
        {"c": campaign_id, "since": since},
    )
    return {
        minute.astimezone(UTC): Minute(int(dials), int(answers), int(ends), int(due))
        for minute, dials, answers, ends, due in rows
        if dials or answers or ends or due
    }


_RECOUNT = """
SELECT k.name, sum(k.value) FROM call_jobs r
LEFT JOIN LATERAL (
    SELECT a.answered_by, a.error_code FROM call_attempts a
    WHERE a.job_id = r.id AND r.status = 'done' AND r.outcome IN ('machine', 'failed')
    ORDER BY a.attempt_no DESC, a.id DESC LIMIT 1
) last ON true
CROSS JOIN LATERAL dialer_job_counts(
    r.status::text, r.outcome::text, r.attempt_count, last.answered_by, last.error_code
) k
WHERE r.campaign_id = :c GROUP BY k.name
UNION ALL
SELECT k.name, sum(k.value) FROM call_attempts r
CROSS JOIN LATERAL dialer_attempt_counts(
    r.status::text, r.answered_at, r.duration_s, r.answered_by, r.digits,
    r.end_reason::text, r.placed_at, r.ended_at, r.due_at
) k
WHERE r.campaign_id = :c GROUP BY k.name
"""

_RECOUNT_MINUTES = """
SELECT minute, sum(dials), sum(answers), sum(ends), sum(due) FROM (
    SELECT m.* FROM call_attempts r
    CROSS JOIN LATERAL dialer_attempt_minutes(
        r.status::text, r.placed_at, r.answered_at, r.ended_at) m
    WHERE r.campaign_id = :c
    UNION ALL
    SELECT m.* FROM call_jobs r
    CROSS JOIN LATERAL dialer_job_minutes(
        r.status::text, r.outcome::text, r.attempt_count, r.next_due_at) m
    WHERE r.campaign_id = :c
) d GROUP BY minute
"""


def recount(session: Session, campaign_id: int) -> tuple[dict[str, int], dict[datetime, Minute]]:
    """Every counter and minute of the campaign computed from scratch over its contacts and
    attempts (a full scan: for checks and backfills, never for a report)."""
    counts = {
        name: int(value)
        for name, value in session.execute(text(_RECOUNT), {"c": campaign_id})
        if value
    }
    by_minute = {
        minute.astimezone(UTC): Minute(int(d), int(a), int(e), int(due))
        for minute, d, a, e, due in session.execute(text(_RECOUNT_MINUTES), {"c": campaign_id})
        if d or a or e or due
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
            "INSERT INTO campaign_counters (campaign_id, name, stripe, value)"  # noqa: S608 (constants)
            f" SELECT :c, name, 0, sum FROM ({_RECOUNT}) d(name, sum) WHERE sum <> 0"
        ),
        {"c": campaign_id},
    )
    session.execute(
        text(
            "INSERT INTO campaign_minutes (campaign_id, minute, stripe, dials, answers, ends, due)"  # noqa: S608 (constants)
            f" SELECT :c, minute, 0, d, a, e, due FROM ({_RECOUNT_MINUTES})"
            " s(minute, d, a, e, due)"
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
