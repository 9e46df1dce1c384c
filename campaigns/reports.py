"""Per-campaign reporting: the report, read from the counters the database keeps current
(`campaigns.counters`), and the exports, streamed from the record (contacts, attempts)."""

from __future__ import annotations

import csv
import io
import itertools
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO
from xml.sax.saxutils import escape as xml_escape

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from campaigns import counters
from campaigns.ingest import escape_formula
from campaigns.lifecycle import get_campaign
from campaigns.number_health import NumberHealth, number_health
from dialer.campaign_state import CampaignAction
from dialer.pool import Keys, Pool
from models import Account, Campaign, CampaignEvent, CampaignStatus, utcnow


class Contacts(BaseModel):
    """Contacts by state; the states are disjoint and add up to `total`."""

    total: int
    """Contacts in the campaign (accepted rows and pushed or single calls)."""
    pending: int
    """Never attempted and due (or due within the current minute)."""
    waiting_for_window: int
    """Never attempted and not yet due: the campaign's `start_at`, a calling window
    (counted by the UTC minute they fall due in)."""
    waiting_for_frequency_cap: int
    """Pending and held by the account's per-number frequency caps (`frequency_caps`: the
    number was called N times in the last D days for one of them), attempted or not, until
    a minute after the current one at least."""
    frequency_cap_opens_at: datetime | None
    """When the first contact held by the frequency cap is due again (UTC); None: none is."""
    scheduled_retry: int
    """Pending again after an attempt, until its retry delay passes (not held by the cap)."""
    dialing: int
    """A lease is taken and the attempt has no provider call yet (`dialing`, `placing`)."""
    live: int
    """A provider call exists and has not ended (queued, ringing, in progress)."""
    done: int
    """Final with any outcome but `expired`."""
    expired: int
    """Final as `expired`: never dialled before `end_at` or their own `call_before`."""
    cancelled: int
    """Final as `canceled`: the campaign was canceled before they were done."""
    rejected: dict[str, int]
    """CSV rows refused at ingest, by reason code (not among `total`)."""


class Outcomes(BaseModel):
    """Contacts done, by final outcome, each named by its `models.Outcome` value: the
    words the call API (`outcome`) and the per-contact export (`outcome` column) use."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    answered: int
    """Answered, not by a machine (AMD `AnsweredBy` human or unknown, or AMD off)."""
    machine: dict[str, int]
    """By Twilio `AnsweredBy` (machine_start, machine_end_beep, ..., fax)."""
    busy: int
    """The line was busy on the final attempt."""
    no_answer: int = Field(alias="no-answer")
    """Rang out unanswered (the ring timeout) on the final attempt."""
    failed: dict[str, int]
    """By the provider's error code, `none` when it gave none."""
    hold_cap: int
    """Hung up by the watchdog: live longer than `max_hold_s`."""
    do_not_call: int
    """On the DNC list at dial time."""
    expired: int
    """Never dialled in time (`end_at`, or the contact's `call_before`)."""
    error: int
    """The dialer failed on the contact on every try (see the attempt's `error_message`)."""
    dial_error: int
    """The call could not be created within the campaign's dial retries."""
    rejected: int
    """Refused at dial time: by the provider (a permanent number error), or by the number
    policy (premium rate, a country not allowed)."""
    canceled: int
    """The campaign was canceled before the contact was done."""


class Rates(BaseModel):
    """Shares (0..1) over calls, None when the denominator is 0."""

    answer_rate: float | None
    """Calls answered / calls placed."""
    human_rate: float | None
    """Calls answered by a person / calls placed."""
    confirmation_rate: float | None
    """DTMF 1 replies / calls answered by a person."""
    cancellation_rate: float | None
    """DTMF 2 replies / calls answered by a person."""


class Attempts(BaseModel):
    total: int
    """Attempts made, `not-placed` ones (no call) included."""
    per_contact: float
    """Calls per contact called at least once (0.0 before any)."""
    calls_placed: int
    """Attempts that became a provider call."""
    late_calls_hung_up: int
    """Calls made after their attempt had been given up, for a contact already dialled
    again, and hung up at once (end reason `late_create`): not in `calls_placed`."""
    opt_outs: int
    """Callees who pressed the opt-out key on this campaign's calls (listed on the
    account's do-not-call list, source `keypress`)."""
    voicemail_drops: int
    """Calls on which the voicemail message was left after a machine's greeting ended."""


class TalkTime(BaseModel):
    """Seconds talked on answered calls (Twilio `CallDuration` > 0)."""

    total_s: int
    """Seconds talked, all answered calls together."""
    mean_s: float
    """Mean seconds per answered call (0.0 before any)."""
    p90_s: float
    """From a histogram (`campaigns.counters.TALK_BOUNDS`), interpolated in its bucket."""
    billable_minutes: int
    """Each call rounded up to the whole minute, as Twilio bills voice calls."""


class MinutePoint(BaseModel):
    minute: datetime
    """The UTC minute's start."""
    dials: int
    """Calls placed in the minute."""
    answers: int
    """Calls answered (by a person or a machine) in the minute."""
    live: int
    """Calls live (placed, not ended) at the minute's end."""


class Lease(BaseModel):
    in_use: int
    """Leases held now (calls being placed or live)."""
    cap: int
    """The scope's cap (`max_concurrency`)."""


class Cps(BaseModel):
    achieved: float
    """Calls placed per second over the last 60 s (sliding-window estimate from this
    minute's and the previous minute's counts)."""
    limit: float
    """The lower of the account's and the campaign's CPS."""


class Percentiles(BaseModel):
    p50: float | None
    """Median, None before any sample."""
    p95: float | None
    """95th percentile, None before any sample."""


class Pacing(BaseModel):
    leases: dict[str, Lease]
    """`account` and `campaign`: leases held in the Redis pool against each cap."""
    cps: Cps
    """Calls per second achieved against the limit."""
    due_to_dial_s: Percentiles
    """Seconds from a contact falling due to its call being placed (histogram,
    `campaigns.counters.DELAY_BOUNDS`)."""


class Breaker(BaseModel):
    state: str
    """`open`: the account's circuit breaker paused the campaign; `closed` otherwise (also
    while its operator paused it: `status_reason` says so)."""
    reason: str | None
    """While open: why it tripped (the provider's error code and message); else None."""
    trips: int
    """Times the account's circuit breaker paused this campaign."""


class Eta(BaseModel):
    remaining: int
    """Contacts not final yet."""
    finish_at: datetime | None
    """Estimated finish (None while not running); the campaign's finish once finished.
    Never before the last pending contact's due time."""


class CampaignReport(BaseModel):
    """A campaign's figures (the JSON of `GET /v1/campaigns/{id}/report`, described field by
    field by the docstrings of this module's models). Counts are integers, durations
    seconds, times UTC."""

    campaign_id: int
    """The campaign's id."""
    name: str
    """The campaign's name."""
    status: str
    """`draft`, `running`, `paused`, `completed` or `canceled`."""
    status_reason: str | None
    """Why it was last paused, canceled or finished (the history's reason), if any."""
    generated_at: datetime
    """When these figures were read (UTC)."""
    finished: bool
    """Every contact is final."""
    contacts: Contacts
    """Contacts by state."""
    outcomes: Outcomes
    """Contacts done, by final outcome."""
    rates: Rates
    """Answer, human, confirmation and cancellation rates."""
    attempts: Attempts
    """Attempts and calls."""
    talk_time: TalkTime
    """Seconds talked."""
    series: list[MinutePoint]
    """The last `minutes` minutes up to now (or up to the finish), oldest first."""
    pacing: Pacing
    """Leases against caps, CPS, and the delay from due to dial."""
    breaker: Breaker
    """The account's circuit breaker as it bears on this campaign."""
    eta: Eta
    """What remains and when it should finish."""
    waiting_reason: str | None
    """Why its due contacts are not being dialled now, while the pacer finds so:
    `caller_ids_spent` (every number of its caller-ID pool is at its concurrency cap or its
    minute's or day's limit) or `caller_ids_rested` (every number is rested or disabled for
    outbound calls); None otherwise."""
    numbers: list[NumberHealth]
    """Number health: per caller ID of its pool (and any other that presented its calls),
    calls, answer and human rates over the last day, `flagged` when its answer rate falls
    under half the campaign's over at least 20 calls, and whether it is rested
    (`campaigns.number_health`)."""


SERIES_MINUTES = 60
"""Minutes in a report's series by default."""


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _by_prefix(counts: dict[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in sorted(counts.items()) if k.startswith(prefix)}


def _paused_by_breaker(session: Session, campaign: Campaign) -> bool:
    """Whether the campaign is paused by the circuit breaker: paused, and the transition
    that paused it last (its history, `models.CampaignEvent`) was the breaker's trip, not
    its operator's pause."""
    if campaign.status is not CampaignStatus.PAUSED:
        return False
    paused_by = session.scalar(
        select(CampaignEvent.action)
        .where(
            CampaignEvent.campaign_id == campaign.id,
            CampaignEvent.to_status == CampaignStatus.PAUSED.value,
        )
        .order_by(CampaignEvent.at.desc(), CampaignEvent.id.desc())
        .limit(1)
    )
    return paused_by == CampaignAction.TRIP_BREAKER.value


_HELD = text(
    """
SELECT count(*) FILTER (WHERE attempt_count = 0), count(*), min(next_due_at)
FROM call_jobs
WHERE campaign_id = :c AND status = 'pending' AND capped_until IS NOT NULL
  AND next_due_at >= :after
"""
)
"""Contacts held by the frequency cap (`models.CallJob.capped_until`) and due at `:after` or
later: never attempted, all, the first due time; from `ix_call_jobs_capped` alone."""
_LAST_DUE = text(
    "SELECT max(next_due_at) FROM call_jobs WHERE campaign_id = :c AND status = 'pending'"
)
"""The last pending contact's due time (one end of `ix_call_jobs_campaign_due`)."""


@dataclass(frozen=True, slots=True)
class CapHold:
    """A campaign's contacts held by the frequency cap: `fresh` of them never attempted,
    `total` in all, the first due again at `opens_at`."""

    fresh: int
    total: int
    opens_at: datetime | None


_OPT_OUTS_AND_DROPS = text(
    "SELECT (SELECT count(*) FROM dnc_entries WHERE campaign_id = :c AND source = 'keypress'),"
    " (SELECT count(*) FROM call_attempts"
    "  WHERE campaign_id = :c AND voicemail_dropped_at IS NOT NULL)"
)
"""A campaign's opt-outs and voicemail drops, each read from its partial index
(`ix_dnc_entries_opt_outs`, `ix_call_attempts_voicemail`): only those rows."""


def frequency_cap_hold(session: Session, campaign_id: int, after: datetime) -> CapHold:
    """The campaign's pending contacts held by the frequency cap and due at `after` or later
    (a contact's hold: `dialer.calls.held_by_cap`); reads only the held contacts."""
    fresh, total, opens_at = session.execute(_HELD, {"c": campaign_id, "after": after}).one()
    return CapHold(int(fresh), int(total), opens_at.astimezone(UTC) if opens_at else None)


def campaign_report(
    session: Session,
    pool: Pool,
    account_id: int,
    campaign_id: int,
    *,
    now: datetime | None = None,
    minutes: int = SERIES_MINUTES,
) -> CampaignReport:
    """The report of one campaign, read from its counters (`campaigns.counters`), a few
    rows whatever the campaign's size, and the Redis pool's leases.

    Estimates: `eta.finish_at` assumes the remaining contacts need as many calls each as
    those called so far, placed at the lower of the CPS limit and the concurrency cap over
    the mean time a call holds its lease, and no earlier than the last pending contact's
    real due time (a calling window, the frequency cap, a retry) and its calls; it does not
    yet skip the hours outside calling windows in between (issue 11).
    `waiting_for_window` is exact to the minute; `waiting_for_frequency_cap` is read from
    the held contacts themselves (`frequency_cap_hold`).

    Raises:
        NotFoundError: `campaign_not_found`.
    """
    campaign: Campaign = get_campaign(session, account_id, campaign_id)
    account = session.get_one(Account, campaign.account_id)
    now = (now or utcnow()).astimezone(UTC)
    status = campaign.status
    finished = status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELED)
    finished_at = campaign.finished_at.astimezone(UTC) if campaign.finished_at else None
    end = _minute(finished_at if finished and finished_at else now)
    start = end - timedelta(minutes=max(1, minutes) - 1)
    since = min(start, _minute(now) - timedelta(minutes=1))  # the achieved CPS reads 2 minutes
    counts, by_minute = counters.read(session, campaign_id, since)

    def c(name: str) -> int:
        return counts.get(name, 0)

    in_progress = c("contacts.in_progress")
    live = min(c("attempts.live"), in_progress)
    fresh = c("contacts.fresh")
    if campaign.start_at is not None and campaign.start_at > now:
        waiting = fresh
    else:
        waiting = min(fresh, sum(m.due for at, m in by_minute.items() if at > _minute(now)))
    # Counted like `waiting`: due in a minute after the current one.
    held = frequency_cap_hold(session, campaign_id, _minute(now) + timedelta(minutes=1))
    held_fresh = min(held.fresh, waiting)
    held_retry = min(held.total - held.fresh, c("contacts.retry"))
    open_contacts = fresh + c("contacts.retry") + in_progress
    contacts = Contacts(
        total=c("contacts.total"),
        pending=fresh - waiting,
        waiting_for_window=waiting - held_fresh,
        waiting_for_frequency_cap=held_fresh + held_retry,
        frequency_cap_opens_at=held.opens_at,
        scheduled_retry=c("contacts.retry") - held_retry,
        dialing=in_progress - live,
        live=live,
        done=c("contacts.done"),
        expired=c("contacts.expired"),
        cancelled=c("contacts.canceled"),
        rejected=dict((campaign.ingest_summary or {}).get("rejected", {})),
    )
    outcomes = Outcomes(
        answered=c("outcome.answered"),
        machine=_by_prefix(counts, "outcome.machine."),
        busy=c("outcome.busy"),
        no_answer=c("outcome.no-answer"),
        failed=_by_prefix(counts, "outcome.failed."),
        hold_cap=c("outcome.hold_cap"),
        do_not_call=c("outcome.do_not_call"),
        expired=c("outcome.expired"),
        error=c("outcome.error"),
        dial_error=c("outcome.dial_error"),
        rejected=c("outcome.rejected"),
        canceled=c("outcome.canceled"),
    )
    placed, human = c("attempts.placed"), c("attempts.human")
    rates = Rates(
        answer_rate=_ratio(c("attempts.answered"), placed),
        human_rate=_ratio(human, placed),
        confirmation_rate=_ratio(c("attempts.digits.1"), human),
        cancellation_rate=_ratio(c("attempts.digits.2"), human),
    )
    attempted = c("contacts.attempted")
    per_contact = c("contacts.attempt_sum") / attempted if attempted else 0.0
    opt_outs, voicemail_drops = session.execute(_OPT_OUTS_AND_DROPS, {"c": campaign_id}).one()
    attempts = Attempts(
        total=c("attempts.total"),
        per_contact=per_contact,
        calls_placed=placed,
        late_calls_hung_up=c("attempts.late"),
        opt_outs=opt_outs,
        voicemail_drops=voicemail_drops,
    )
    talked = c("talk.calls")
    talk = TalkTime(
        total_s=c("talk.seconds"),
        mean_s=c("talk.seconds") / talked if talked else 0.0,
        p90_s=counters.percentile(counts, "talk.b.", counters.TALK_BOUNDS, 0.9) or 0.0,
        billable_minutes=c("talk.billable_minutes"),
    )
    series = _series(by_minute, start, end, c("attempts.live"))
    cps_limit = min(account.cps, campaign.cps) if campaign.cps else account.cps
    keys = Keys(account.id)
    pacing = Pacing(
        leases={
            "account": Lease(in_use=pool.live(keys.account_pool()), cap=account.max_concurrency),
            "campaign": Lease(
                in_use=pool.live(keys.campaign_pool(campaign.id)), cap=campaign.max_concurrency
            ),
        },
        cps=Cps(achieved=_achieved_cps(by_minute, now), limit=cps_limit),
        due_to_dial_s=Percentiles(
            p50=counters.percentile(counts, "due.b.", counters.DELAY_BOUNDS, 0.5),
            p95=counters.percentile(counts, "due.b.", counters.DELAY_BOUNDS, 0.95),
        ),
    )
    tripped = _paused_by_breaker(session, campaign)
    breaker = Breaker(
        state="open" if tripped else "closed",
        reason=campaign.status_reason if tripped else None,
        trips=campaign.breaker_trips,
    )
    if finished:
        finish_at = finished_at
    elif status is CampaignStatus.RUNNING:
        hold_calls = c("hold.calls")
        hold_s = c("hold.seconds") / hold_calls if hold_calls else float(campaign.ring_timeout_s)
        slots = min(campaign.max_concurrency, account.max_concurrency)
        calls_per_s = min(cps_limit, slots / max(hold_s, 1.0))
        calls_left = open_contacts * max(per_contact, 1.0)
        begin = max(now, campaign.start_at) if campaign.start_at else now
        finish_at = begin + timedelta(seconds=calls_left / calls_per_s)
        last_due = session.scalar(_LAST_DUE, {"c": campaign_id})
        if last_due is not None and open_contacts:
            last_calls = timedelta(seconds=max(per_contact, 1.0) / calls_per_s)
            finish_at = max(finish_at, last_due.astimezone(UTC) + last_calls)
    else:
        finish_at = None
    return CampaignReport(
        campaign_id=campaign.id,
        name=campaign.name,
        status=status.value,
        status_reason=campaign.status_reason,
        generated_at=now,
        finished=finished and open_contacts == 0,
        contacts=contacts,
        outcomes=outcomes,
        rates=rates,
        attempts=attempts,
        talk_time=talk,
        series=series,
        pacing=pacing,
        breaker=breaker,
        eta=Eta(remaining=open_contacts, finish_at=finish_at),
        waiting_reason=_waiting_reason(pool, keys, campaign) if not finished else None,
        numbers=number_health(session, campaign, now),
    )


def _waiting_reason(pool: Pool, keys: Keys, campaign: Campaign) -> str | None:
    """The reason the pacer's last rounds left for the campaign's due contacts waiting
    (`dialer.dispatch.pacer`), if it still stands."""
    if campaign.status is not CampaignStatus.RUNNING:
        return None
    reason = pool.redis.get(keys.campaign_waiting(campaign.id))
    return reason.decode() if isinstance(reason, bytes) else None


def _series(
    by_minute: dict[datetime, counters.Minute], start: datetime, end: datetime, live_now: int
) -> list[MinutePoint]:
    """Every minute from `start` to `end`; live calls at each minute's end, worked back
    from the calls live now (a minute's dials add to it, its ends take away)."""
    live = live_now - sum(m.dials - m.ends for at, m in by_minute.items() if at > end)
    points: list[MinutePoint] = []
    at = end
    while at >= start:
        m = by_minute.get(at, counters.Minute())
        points.append(MinutePoint(minute=at, dials=m.dials, answers=m.answers, live=live))
        live -= m.dials - m.ends
        at -= timedelta(minutes=1)
    points.reverse()
    return points


def _achieved_cps(by_minute: dict[datetime, counters.Minute], now: datetime) -> float:
    """Calls placed per second over the 60 s before `now`: this minute's dials plus the
    previous minute's in proportion to the part of it still inside the window (the
    sliding-window counter estimate)."""
    this = _minute(now)
    into = (now - this).total_seconds() / 60
    previous = by_minute.get(this - timedelta(minutes=1), counters.Minute()).dials
    current = by_minute.get(this, counters.Minute()).dials
    return (previous * (1 - into) + current) / 60


EXPORT_COLUMNS = (
    "line",
    "phone",
    "status",
    "outcome",
    "attempts",
    "answered_by",
    "digits",
    "talk_seconds",
    "menu_action",
    "recording_url",
    "recording_duration_s",
)
"""The per-contact export's first columns: the contact, then its last attempt's facts
(`menu_action`: what its last key did, `dialer.menu.MenuAction`; its recording)."""

ATTEMPT_FIELDS = ("at", "status", "answered_by", "duration_s", "error_code", "digits")
"""Per attempt of the per-contact export, columns `attempt<i>_<field>`: when it was placed
(or created, if it never was), its status, `AnsweredBy`, duration (s), error code, digits."""

ATTEMPT_COLUMNS = (
    "line",
    "phone",
    "attempt_id",
    "attempt_no",
    "created_at",
    "placed_at",
    "answered_at",
    "ended_at",
    "status",
    "answered_by",
    "duration_s",
    "error_code",
    "digits",
    "end_reason",
    "call_sid",
    "menu_action",
    "recording_url",
    "recording_duration_s",
)
"""The per-attempt export's columns, one row per attempt."""

_BATCH = 1000
"""Rows fetched per round trip from the server-side cursor of an export."""

_CONTACTS = text(
    """
SELECT j.id, j.line_no, j.phone_e164, j.status, j.outcome, j.attempt_count, j.variables,
       coalesce(a.placed_at, a.created_at), a.status, a.answered_by, a.duration_s,
       a.error_code, a.digits, a.menu_action, a.recording_url, a.recording_duration_s
FROM call_jobs j
LEFT JOIN call_attempts a ON a.job_id = j.id
WHERE j.campaign_id = :c
ORDER BY j.id, a.id
"""
)
"""A contact per run of rows, its attempts in order: ingest inserts the contacts in the
CSV's order, so `id` order is line order, and both sides stream from their indexes (no
sort of the campaign before the first row)."""
_MOST_ATTEMPTS = text(
    "SELECT coalesce(max(n), 0) FROM"
    " (SELECT count(*) AS n FROM call_attempts WHERE campaign_id = :c GROUP BY job_id) t"
)
_VARIABLE_NAMES = text(
    "SELECT DISTINCT jsonb_object_keys(variables) FROM call_jobs WHERE campaign_id = :c"
)
"""Every variable column any contact of the campaign has (contacts pushed to a schedule,
single calls into a named campaign and CSVs with blank cells differ): one pass over the
campaign's contacts that keeps only the distinct names, before the export streams."""
_ATTEMPTS = text(
    """
SELECT j.line_no, a.phone_e164, a.id, a.attempt_no, a.created_at, a.placed_at,
       a.answered_at, a.ended_at, a.status, a.answered_by, a.duration_s, a.error_code,
       a.digits, a.end_reason, a.call_sid, a.menu_action, a.recording_url,
       a.recording_duration_s
FROM call_attempts a JOIN call_jobs j ON j.id = a.job_id
WHERE a.campaign_id = :c
ORDER BY a.id
"""
)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def contact_rows(session: Session, account_id: int, campaign_id: int) -> Iterator[list[str]]:
    """The per-contact export as rows of text, header first: `EXPORT_COLUMNS`, then
    `attempt<i>_<field>` for each of `ATTEMPT_FIELDS` and i up to the most attempts any
    contact had (oldest first), then the contacts' own columns by name (every name any
    contact has, sorted; blank where a contact has none); contacts in the CSV's order.
    Streams through a server-side cursor (constant memory); values as stored
    (no escaping).

    Raises:
        NotFoundError: `campaign_not_found` (before the first row).
    """
    get_campaign(session, account_id, campaign_id)
    most = int(session.execute(_MOST_ATTEMPTS, {"c": campaign_id}).scalar_one())
    per_attempt = [f"attempt{i}_{f}" for i in range(1, most + 1) for f in ATTEMPT_FIELDS]
    variables = sorted(session.scalars(_VARIABLE_NAMES, {"c": campaign_id}))
    yield [*EXPORT_COLUMNS, *per_attempt, *variables]
    rows = session.execute(_CONTACTS.execution_options(yield_per=_BATCH), {"c": campaign_id})
    for _, runs in itertools.groupby(rows, key=lambda row: row[0]):
        contact = list(runs)
        _, line, phone, status, outcome, attempt_count, values = contact[0][:7]
        attempted = [row for row in contact if row[8] is not None]
        tries = [row[7:13] for row in attempted]
        last = tries[-1] if tries else (None,) * len(ATTEMPT_FIELDS)
        last_extra = attempted[-1][13:16] if attempted else (None, None, None)
        flat = [_text(v) for attempt in tries for v in attempt]
        yield [
            str(line),
            phone,
            status,
            outcome or "",
            str(attempt_count),
            _text(last[2]),
            _text(last[5]),
            _text(last[3]),
            *(_text(v) for v in last_extra),
            *flat,
            *[""] * (len(per_attempt) - len(flat)),
            *(_text(values.get(name)) for name in variables),
        ]


def attempt_rows(session: Session, account_id: int, campaign_id: int) -> Iterator[list[str]]:
    """The per-attempt export as rows of text, header (`ATTEMPT_COLUMNS`) first, one row
    per attempt in the order they were made; streamed like `contact_rows`.

    Raises:
        NotFoundError: `campaign_not_found` (before the first row).
    """
    get_campaign(session, account_id, campaign_id)
    yield list(ATTEMPT_COLUMNS)
    for row in session.execute(_ATTEMPTS.execution_options(yield_per=_BATCH), {"c": campaign_id}):
        yield [_text(value) for value in row]


_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def csv_cell(value: str) -> str:
    """A value made safe for a spreadsheet opening the CSV: escaped against formula
    injection (`escape_formula`), except an E.164 number, written as is: `+` and digits
    evaluate to nothing but themselves, and a prefix would corrupt the number for the
    programs that read CSV. Spreadsheets that must show the `+` read the XLSX export
    (`write_xlsx`)."""
    escaped = escape_formula(value)
    return value if escaped is value or _E164.fullmatch(value) else escaped


def write_csv(rows: Iterable[list[str]], sink: IO[str]) -> int:
    """Write `rows` (header first) as CSV to `sink` (opened with newline=""), every value
    through `csv_cell`; returns the rows written after the header."""
    writer = csv.writer(sink)
    written = -1
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        written += 1
    return max(written, 0)


_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels"'
        ' ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Target="xl/workbook.xml" Type="http://schemas.'
        'openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>'
        "</Relationships>"
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
        ' xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="export" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Target="worksheets/sheet1.xml" Type="http://schemas.'
        'openxmlformats.org/officeDocument/2006/relationships/worksheet"/>'
        "</Relationships>"
    ),
}
"""The fixed parts of a one-sheet SpreadsheetML workbook (ECMA-376 Part 1)."""

_INTEGER = re.compile(r"-?[0-9]{1,15}")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
"""Characters XML 1.0 cannot carry."""


def _xlsx_cell(value: str) -> str:
    if _INTEGER.fullmatch(value):
        return f"<c><v>{value}</v></c>"
    text_value = xml_escape(_NOT_XML.sub("", value))
    return f'<c t="inlineStr"><is><t xml:space="preserve">{text_value}</t></is></c>'


def write_xlsx(rows: Iterable[list[str]], sink: IO[bytes]) -> int:
    """Write `rows` (header first) as an XLSX workbook to `sink`, streamed (the sheet is
    compressed as it is written); returns the rows written after the header.

    Every value that is not a plain integer is an inline string cell: a spreadsheet keeps
    it as text, so an E.164 number keeps its `+`, and no cell is ever a formula (no
    escaping needed; values are as stored). Plain integers (attempts, seconds, error codes)
    are number cells.
    """
    written = -1
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as book:
        for name, part in _XLSX_PARTS.items():
            book.writestr(name, part)
        with (
            book.open("xl/worksheets/sheet1.xml", "w") as raw,
            io.TextIOWrapper(raw, encoding="utf-8") as sheet,
        ):
            sheet.write(
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                "<sheetData>"
            )
            for row in rows:
                sheet.write("<row>" + "".join(_xlsx_cell(value) for value in row) + "</row>")
                written += 1
            sheet.write("</sheetData></worksheet>")
    return max(written, 0)


def export_results(session: Session, account_id: int, campaign_id: int, sink: IO[str]) -> int:
    """Write the per-contact export (`contact_rows`) as CSV to `sink`; returns the contacts
    written. Raises `NotFoundError` (`campaign_not_found`)."""
    return write_csv(contact_rows(session, account_id, campaign_id), sink)


def export_attempts(session: Session, account_id: int, campaign_id: int, sink: IO[str]) -> int:
    """Write the per-attempt export (`attempt_rows`) as CSV to `sink`; returns the attempts
    written. Raises `NotFoundError` (`campaign_not_found`)."""
    return write_csv(attempt_rows(session, account_id, campaign_id), sink)


def export_xlsx(
    session: Session, account_id: int, campaign_id: int, sink: IO[bytes], *, attempts: bool
) -> int:
    """Write the per-contact (or, with `attempts`, the per-attempt) export as an XLSX
    workbook to `sink` (`write_xlsx`); returns the rows written. Raises `NotFoundError`
    (`campaign_not_found`) before writing anything."""
    rows = (attempt_rows if attempts else contact_rows)(session, account_id, campaign_id)
    first = next(rows)  # the header: raises for an unknown campaign before the file starts
    return write_xlsx(itertools.chain([first], rows), sink)
