"""Recurring reminder batches: schedules (a cron expression in a time zone) whose every
occurrence creates a campaign from a source and starts it.

A firing (`fire_due` at each beat tick, `run_now` on request) creates a campaign named after
the schedule and the occurrence, ingests the source (the CSV at `csv_path` read afresh at
that moment, then the contacts pushed since the last run, `add_contacts`), starts it, and
records a `models.ScheduleRun`: rows read, accepted and rejected, or the error. An empty
source records an `empty` run with no campaign; a missing or unreadable file, or a file
refused as a whole, records a `failed` run (`source_not_found`, `source_unreadable`, or the
ingest's code such as `no_phone_column`) and leaves the pushed contacts for the next run.
Neither stops the schedule. Any other failure of a firing (a `DialerError` such as
`from_number_not_found` when its caller ID was removed, or anything unexpected,
`internal_error`) is a `failed` run too, and the schedule's next occurrence fires as usual:
one schedule's failure never stops another's (`fire_due`).

Exactly once per occurrence, however many beats tick: the run is inserted with
`ON CONFLICT DO NOTHING` on its unique (schedule, occurrence), in the transaction that
creates the campaign and consumes the pushed contacts, and only the inserter goes on. A
beat that was down fires the latest missed occurrence once if it is younger than the
schedule's `catch_up_s`, never once per missed tick; older occurrences are skipped, with
one `skip` event in the schedule's history and no run.

Cron (five fields) is evaluated in the schedule's zone by cronsim, which follows Debian
cron across daylight-saving changes: an occurrence in the hour skipped by a spring-forward
runs once at the first valid time after it (02:30 becomes 03:00 in New York); an
occurrence at a fixed time in the hour repeated by a fall-back runs once, at its first
pass, while an expression with a wildcard hour (`*/20 * * * *`) keeps its pace in real time
through both passes. Times stored are UTC.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from cronsim import CronSim, CronSimError
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from campaigns import lifecycle
from campaigns.csvsource import IngestError, IngestErrorCode, find_phone_column, open_csv
from campaigns.history import record_schedule_event
from campaigns.ingest import IngestSummary, ingest_contacts
from campaigns.options import CampaignOptions, ScheduleOptions
from campaigns.paging import Page, keyset_page
from dialer.campaign_state import SCHEDULER
from dialer.errors import ConflictError, DialerError, InvalidOptionError, NotFoundError
from dialer.frequency import caps_of
from dialer.providers.twiml import template_placeholders
from models import (
    Account,
    Campaign,
    CampaignEvent,
    Schedule,
    ScheduleContact,
    ScheduleRun,
    ScheduleRunStatus,
    ScheduleStatus,
    transaction,
    utcnow,
)

log = structlog.get_logger(__name__)

DEFAULT_CATCH_UP_S = 3600
MIN_CATCH_UP_S = 60
"""A beat ticks every few seconds; a catch-up shorter than a minute would let a slow tick
skip an occurrence it should fire."""
MAX_CATCH_UP_S = 7 * 86400
MAX_NAME_LENGTH = 100
"""Leaves room in the campaign's 200 characters for the occurrence it is named after."""
MAX_PUSHED_ROWS = 10_000
"""Contacts one `add_contacts` call may push."""
MAX_PUSHED_BYTES = 10 * 1024 * 1024
"""Largest CSV one `add_contacts_csv` call may push."""
SHARED_FIELDS = frozenset({"name", "timezone"})
"""Campaign settings a schedule declares itself: `name` (the campaigns are named after the
schedule) and `timezone` (the schedule's zone)."""
FIXED_DATES = frozenset({"start_at", "end_at"})
"""Campaign settings a schedule refuses: one date copied into every occurrence would expire
every run after it at once; `expire_after_s` is measured from each occurrence instead."""


@dataclass(frozen=True)
class Fired:
    """What one firing did: its run, and the campaign started (None for an empty or failed
    run) with its account, whose pacer should be woken."""

    schedule_id: int
    run_id: int
    account_id: int
    campaign_id: int | None
    status: ScheduleRunStatus


@dataclass(frozen=True)
class ScheduleWarning:
    """Something about a schedule that is allowed but probably not meant: a stable `code`
    and a sentence saying what will happen and what to change."""

    code: str
    message: str


# --- cron ------------------------------------------------------------------------------------


def parse_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`. Raises `DialerError` `invalid_timezone`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise DialerError("invalid_timezone", f"no time zone {name!r}") from error


def occurrences_after(cron: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The occurrences of `cron` in `zone` strictly after `after` (aware), in UTC.

    Raises:
        DialerError: `invalid_cron`, not five fields or not a valid expression.
    """
    if len(cron.split()) != 5:
        raise DialerError("invalid_cron", f"{cron!r}: a cron expression has five fields")
    try:
        ticks = CronSim(cron, after.astimezone(zone))
    except CronSimError as error:
        raise DialerError("invalid_cron", f"{cron!r}: {error}") from error
    # cronsim drops microseconds and yields the times after that whole second.
    return (tick.astimezone(UTC) for tick in ticks if tick > after)


def next_occurrence(cron: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first occurrence strictly after `after` (UTC).

    Raises:
        DialerError: `invalid_cron`, also for an expression that never occurs (Feb 30).
    """
    try:
        return next(occurrences_after(cron, zone, after))
    except (StopIteration, CronSimError) as error:
        raise DialerError("invalid_cron", f"{cron!r} never occurs") from error


def due_occurrence(
    cron: str, zone: ZoneInfo, next_run_at: datetime, now: datetime, catch_up_s: int
) -> tuple[datetime | None, datetime]:
    """`(occurrence to fire, next occurrence)` for a schedule not yet handled since
    `next_run_at`, at `now`: the latest occurrence in `[next_run_at, now]` no older than
    `catch_up_s` seconds (None when every one is older: they are skipped), and the first
    occurrence after `now`."""
    floor = max(next_run_at, now - timedelta(seconds=catch_up_s))
    latest = None
    for occurrence in occurrences_after(cron, zone, floor - timedelta(microseconds=1)):
        if occurrence > now:
            return latest, occurrence
        latest = occurrence
    raise DialerError("invalid_cron", f"{cron!r} never occurs again")  # pragma: no cover


# --- the operator's side ---------------------------------------------------------------------


def frequency_cap_warnings(
    schedule: Schedule, account: Account, now: datetime | None = None
) -> list[ScheduleWarning]:
    """`frequency_cap_stall`, once per cap, when the schedule fires more often in a cap's
    period (from its next occurrence) than that cap of the account's `frequency_caps`
    ("N calls in D days", `dialer.frequency`) lets one number be called: a number in every
    batch (the same CSV read at each occurrence, the same contacts pushed again) is then
    held by the cap from run N + 1 on, for up to D days. Counts at most N + 1 occurrences
    per cap."""
    zone = parse_zone(schedule.timezone)
    first = next_occurrence(schedule.cron, zone, now or utcnow())
    warnings = []
    for cap in caps_of(account.frequency_caps):
        runs = 0
        for occurrence in occurrences_after(schedule.cron, zone, first - timedelta(microseconds=1)):
            if occurrence >= first + cap.period or runs > cap.calls:
                break
            runs += 1
        if runs <= cap.calls:
            continue
        warnings.append(
            ScheduleWarning(
                "frequency_cap_stall",
                f"{schedule.cron!r} fires more than {cap.calls} times in {cap.days} day(s), but"
                f" a number is called at most {cap.label()} (the account's frequency_caps): a"
                f" number in every batch waits up to {cap.days} day(s) from run"
                f" {cap.calls + 1} on. Fire less often, vary the numbers, or change the caps"
                " (dialer accounts set NAME --frequency-cap CALLS/DAYS).",
            )
        )
    return warnings


def _checked(options: dict[str, Any]) -> ScheduleOptions:
    """A schedule's campaign settings, checked (`missing_field`, `invalid_option`,
    `invalid_template`): the schedule's own fields and fixed dates are refused by name."""
    for fields, why in (
        (SHARED_FIELDS, "the schedule's own"),
        (FIXED_DATES, "a schedule has no fixed dates: use expire_after_s"),
    ):
        given = sorted(fields & set(options))
        if given:
            raise InvalidOptionError(
                f"{given}: {why}", [{"field": f, "message": why} for f in given]
            )
    return ScheduleOptions.model_validate(options)


def _options(
    name: str, timezone: str, options: dict[str, Any], occurrence: datetime
) -> CampaignOptions:
    """The settings of the campaign of `occurrence`: the stored ones, checked again, with
    `expire_after_s` counted from the occurrence as the campaign's `end_at`."""
    batch = _checked(options)
    expire_s = batch.expire_after_s
    return CampaignOptions(
        **batch.model_dump(exclude={"expire_after_s"}),
        name=name,
        timezone=timezone,
        end_at=None if expire_s is None else occurrence + timedelta(seconds=expire_s),
    )


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidOptionError(
            f"name: 1 to {MAX_NAME_LENGTH} characters",
            [{"field": "name", "message": f"1 to {MAX_NAME_LENGTH} characters"}],
        )


def _check_catch_up(catch_up_s: int) -> None:
    if not MIN_CATCH_UP_S <= catch_up_s <= MAX_CATCH_UP_S:
        message = f"between {MIN_CATCH_UP_S} and {MAX_CATCH_UP_S} seconds"
        raise InvalidOptionError(
            f"catch_up_s: {message}", [{"field": "catch_up_s", "message": message}]
        )


def create_schedule(
    session: Session,
    account: Account,
    *,
    name: str,
    cron: str,
    timezone: str,
    csv_path: Path | None,
    options: dict[str, Any],
    actor: str,
    catch_up_s: int = DEFAULT_CATCH_UP_S,
    now: datetime | None = None,
) -> Schedule:
    """A new active schedule, its first occurrence after `now` as `next_run_at`.

    `options` are the campaigns' settings (`campaigns.options.ScheduleOptions`: no `name`,
    `timezone`, `start_at` or `end_at`; `expire_after_s` is counted from each occurrence),
    checked now and stored as JSON (the fields given). `csv_path` (made absolute) need
    not exist yet: it is read at each firing. None: the batches are only pushed contacts.

    Raises:
        DialerError: `invalid_cron`, `invalid_timezone`.
        InvalidOptionError: `invalid_option` (a setting, the name, `catch_up_s` out of
            [60, 604800]).
        TemplateError: `invalid_template`.
    """
    _check_name(name)
    _check_catch_up(catch_up_s)
    zone = parse_zone(timezone)
    first = next_occurrence(cron, zone, now or utcnow())
    checked = _checked(options)
    schedule = Schedule(
        account_id=account.id,
        name=name,
        cron=cron,
        timezone=timezone,
        csv_path=str(csv_path.expanduser().absolute()) if csv_path else None,
        options=checked.model_dump(mode="json", include=set(options)),
        catch_up_s=catch_up_s,
        status=ScheduleStatus.ACTIVE,
        next_run_at=first,
    )
    session.add(schedule)
    session.flush()
    record_schedule_event(
        session, schedule.id, "create", actor=actor, to_status=ScheduleStatus.ACTIVE.value
    )
    return schedule


def get_schedule(
    session: Session, account_id: int, schedule_id: int, *, lock: bool = False
) -> Schedule:
    """The account's schedule (not deleted).

    Raises:
        NotFoundError: `schedule_not_found` (also another account's or a deleted one).
    """
    query = select(Schedule).where(
        Schedule.id == schedule_id,
        Schedule.account_id == account_id,
        Schedule.status != ScheduleStatus.DELETED,
    )
    schedule = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if schedule is None:
        raise NotFoundError("schedule_not_found", f"no schedule {schedule_id}")
    return schedule


def list_schedules(
    session: Session, account_id: int, *, limit: int | None = None, cursor: str | None = None
) -> Page[Schedule]:
    """The account's schedules (not deleted), oldest first, a page at a time
    (`campaigns.paging.keyset_page`: raises `invalid_cursor`)."""
    query = select(Schedule).where(
        Schedule.account_id == account_id, Schedule.status != ScheduleStatus.DELETED
    )
    return keyset_page(session, query, "schedules", [Schedule.id], limit=limit, cursor=cursor)


def update_schedule(
    session: Session,
    account_id: int,
    schedule_id: int,
    *,
    actor: str,
    now: datetime | None = None,
    **changes: Any,
) -> Schedule:
    """Change any of `name`, `cron`, `timezone`, `catch_up_s`, `options` (replaced
    whole), `status` (`active` resumes, `paused` pauses). A change of cron, zone or a resume
    moves `next_run_at` to the first occurrence after `now`: occurrences missed while paused
    are not caught up. Recorded as `pause`, `resume` or `update` (naming the fields).

    Raises:
        NotFoundError: `schedule_not_found`.
        ConflictError: `invalid_state`, pausing a paused or resuming an active schedule.
        DialerError, InvalidOptionError, TemplateError: as `create_schedule`.
    """
    schedule = get_schedule(session, account_id, schedule_id, lock=True)
    now = now or utcnow()
    unknown = set(changes) - {"name", "cron", "timezone", "catch_up_s", "options", "status"}
    if unknown:
        raise TypeError(f"unknown schedule fields {sorted(unknown)}")
    status = changes.pop("status", None)
    if status is not None:
        wanted = ScheduleStatus(status)
        if wanted is ScheduleStatus.DELETED or wanted is schedule.status:
            verb = {ScheduleStatus.ACTIVE: "resume", ScheduleStatus.PAUSED: "pause"}.get(
                wanted, "delete"
            )
            raise ConflictError(
                "invalid_state",
                f"cannot {verb} schedule {schedule.id}: it is {schedule.status.value}",
            )
    name = changes.get("name", schedule.name)
    cron = changes.get("cron", schedule.cron)
    timezone = changes.get("timezone", schedule.timezone)
    options = changes.get("options", schedule.options)
    _check_name(name)
    _check_catch_up(changes.get("catch_up_s", schedule.catch_up_s))
    zone = parse_zone(timezone)
    following = next_occurrence(cron, zone, now)
    checked = _checked(options)
    fields = sorted(k for k, v in changes.items() if v != getattr(schedule, k))
    for key, value in changes.items():
        setattr(schedule, key, value)
    schedule.options = checked.model_dump(mode="json", include=set(options))
    if "cron" in fields or "timezone" in fields:
        schedule.next_run_at = following
    if fields:
        record_schedule_event(
            session, schedule.id, "update", actor=actor, reason=f"changed {', '.join(fields)}"
        )
    if status is not None:
        before = schedule.status
        schedule.status = ScheduleStatus(status)
        if schedule.status is ScheduleStatus.ACTIVE:
            schedule.next_run_at = following
        record_schedule_event(
            session,
            schedule.id,
            "resume" if schedule.status is ScheduleStatus.ACTIVE else "pause",
            actor=actor,
            from_status=before.value,
            to_status=schedule.status.value,
        )
    return schedule


def pause_schedule(session: Session, account_id: int, schedule_id: int, *, actor: str) -> Schedule:
    """active -> paused. Raises as `update_schedule`."""
    return update_schedule(session, account_id, schedule_id, actor=actor, status="paused")


def resume_schedule(
    session: Session, account_id: int, schedule_id: int, *, actor: str, now: datetime | None = None
) -> Schedule:
    """paused -> active, next firing at the first occurrence after `now`. Raises as
    `update_schedule`."""
    return update_schedule(session, account_id, schedule_id, actor=actor, now=now, status="active")


def delete_schedule(session: Session, account_id: int, schedule_id: int, *, actor: str) -> None:
    """The schedule fires no more and is gone for the operator (404); its runs, the
    campaigns it created and its history stay; pushed contacts not yet run are dropped.

    Raises:
        NotFoundError: `schedule_not_found`.
    """
    schedule = get_schedule(session, account_id, schedule_id, lock=True)
    before = schedule.status
    schedule.status = ScheduleStatus.DELETED
    session.execute(delete(ScheduleContact).where(ScheduleContact.schedule_id == schedule.id))
    record_schedule_event(
        session,
        schedule.id,
        "delete",
        actor=actor,
        from_status=before.value,
        to_status=ScheduleStatus.DELETED.value,
    )


def list_runs(
    session: Session,
    account_id: int,
    schedule_id: int,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[ScheduleRun]:
    """The schedule's runs, newest occurrence first, a page at a time. Raises
    `schedule_not_found`, `invalid_cursor`."""
    get_schedule(session, account_id, schedule_id)
    return keyset_page(
        session,
        select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id),
        f"runs:{schedule_id}",
        [ScheduleRun.occurrence, ScheduleRun.id],
        descending=True,
        limit=limit,
        cursor=cursor,
    )


def schedule_events(
    session: Session,
    account_id: int,
    schedule_id: int,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[CampaignEvent]:
    """The schedule's history, oldest first, a page at a time. Raises
    `schedule_not_found`, `invalid_cursor`."""
    get_schedule(session, account_id, schedule_id)
    return keyset_page(
        session,
        select(CampaignEvent).where(CampaignEvent.schedule_id == schedule_id),
        f"schedule-events:{schedule_id}",
        [CampaignEvent.at, CampaignEvent.id],
        limit=limit,
        cursor=cursor,
    )


# --- pushed contacts -------------------------------------------------------------------------


def add_contacts(
    session: Session, account_id: int, schedule_id: int, rows: list[dict[str, str]]
) -> int:
    """Add `rows` (column -> value, as a CSV row gives them) to the schedule's next batch;
    returns how many. The next run ingests them after the file, with the same checks (a
    row refused there is counted in the run's `rejected`).

    Raises:
        NotFoundError: `schedule_not_found`.
        DialerError: `no_contacts` (none given), `too_many_contacts` (over 10,000).
        IngestError: `no_phone_column` (no row has one), `missing_variable` (no column for
            a placeholder of the message).
    """
    schedule = get_schedule(session, account_id, schedule_id)
    if not rows:
        raise DialerError("no_contacts", "no contacts given")
    if len(rows) > MAX_PUSHED_ROWS:
        raise DialerError("too_many_contacts", f"at most {MAX_PUSHED_ROWS} contacts at once")
    options = _checked(schedule.options)
    contacts = [_with_phone_column(row, options.phone_column) for row in rows]
    header = {key for row in contacts for key in row}
    missing = sorted(template_placeholders(options.message) - header)
    if missing:
        raise IngestError(
            IngestErrorCode.MISSING_VARIABLE, f"no column for required variables {missing}"
        )
    session.execute(
        insert(ScheduleContact),
        [{"schedule_id": schedule.id, "fields": fields} for fields in contacts],
    )
    return len(rows)


def _with_phone_column(row: dict[str, str], phone_column: str | None) -> dict[str, str]:
    """`row` with stripped names, its phone column named `phone` unless the campaigns name
    it (`phone_column`), so rows pushed with different names (`mobile`, `to`) line up.

    Raises:
        IngestError: `no_phone_column`.
    """
    fields = {key.strip(): value for key, value in row.items()}
    names = list(fields)
    found = names[find_phone_column(names, phone_column)]
    if phone_column is None and found != "phone":
        fields["phone"] = fields.pop(found)
    return fields


def add_contacts_csv(session: Session, account_id: int, schedule_id: int, source: BinaryIO) -> int:
    """`add_contacts` with the rows of a CSV (any encoding and delimiter ingest reads, at
    most 10 MiB); a row whose field count differs from the header's is left out (the count
    returned says how many were added). Raises as `add_contacts`, and `IngestError` for a
    file refused whole."""
    rows_in = open_csv(source, max_bytes=MAX_PUSHED_BYTES)
    header = rows_in.header
    rows = [
        dict(zip(header, row, strict=True))
        for _, row in rows_in.rows()
        if row is not None and len(row) == len(header)
    ]
    return add_contacts(session, account_id, schedule_id, rows)


def _pushed_csv(contacts: list[dict[str, str]]) -> bytes:
    """The pushed contacts as one UTF-8 CSV (columns: every name any of them has)."""
    header = list(dict.fromkeys(key for row in contacts for key in row))
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows([row.get(name, "") for name in header] for row in contacts)
    return text.getvalue().encode("utf-8")


# --- firing ----------------------------------------------------------------------------------


class _SourceError(Exception):
    """The file could not be read or was refused whole: a failed run with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _ingest(
    session: Session,
    campaign: Campaign,
    source: BinaryIO,
    options: CampaignOptions,
    sink: TextIO,
) -> IngestSummary | None:
    """Ingest one source into the campaign in a savepoint; None when it has no data rows.

    Raises:
        _SourceError: refused whole (the ingest's code) or unreadable (`source_unreadable`).
    """
    savepoint = session.begin_nested()
    try:
        summary = ingest_contacts(
            session,
            campaign,
            source,
            phone_column=options.phone_column,
            required_variables=frozenset(template_placeholders(options.message)),
            rejected_sink=sink,
        )
    except IngestError as error:
        savepoint.rollback()
        if error.code in (IngestErrorCode.EMPTY_FILE, IngestErrorCode.HEADER_ONLY):
            return None
        raise _SourceError(error.code, error.message) from error
    except OSError as error:
        savepoint.rollback()
        raise _SourceError("source_unreadable", f"cannot read the source: {error}") from error
    savepoint.commit()
    return summary


def _campaign_name(schedule: Schedule, occurrence: datetime, manual: bool) -> str:
    local = occurrence.astimezone(parse_zone(schedule.timezone))
    suffix = " (run now)" if manual else ""
    return f"{schedule.name} {local:%Y-%m-%d %H:%M %Z}{suffix}"


def _fire(
    session: Session,
    schedule: Schedule,
    occurrence: datetime,
    *,
    manual: bool,
    actor: str,
    sink: TextIO,
) -> ScheduleRun | None:
    """Fire `schedule` for `occurrence` in the session's transaction, unless a run for it
    exists already (then None: another beat fired it)."""
    run_id = session.scalar(
        insert(ScheduleRun)
        .values(
            schedule_id=schedule.id,
            occurrence=occurrence,
            manual=manual,
            status=ScheduleRunStatus.EMPTY,
            rows=0,
            accepted=0,
            rejected=0,
            pushed=0,
        )
        .on_conflict_do_nothing(index_elements=["schedule_id", "occurrence"])
        .returning(ScheduleRun.id)
    )
    if run_id is None:
        return None
    run = session.get_one(ScheduleRun, run_id)
    batch = session.begin_nested()
    try:
        options = _options(
            _campaign_name(schedule, occurrence, manual),
            schedule.timezone,
            schedule.options,
            occurrence,
        )
        account = session.get_one(Account, schedule.account_id)
        campaign = lifecycle.new_campaign(session, account, options)
        summaries: list[IngestSummary] = []
        if schedule.csv_path is not None:
            try:
                source = Path(schedule.csv_path).open("rb")  # noqa: SIM115  # closed below
            except FileNotFoundError as error:
                raise _SourceError("source_not_found", f"no file {schedule.csv_path}") from error
            except OSError as error:
                raise _SourceError(
                    "source_unreadable", f"cannot read {schedule.csv_path}: {error.strerror}"
                ) from error
            with source:
                summary = _ingest(session, campaign, source, options, sink)
            if summary is not None:
                summaries.append(summary)
        pushed = session.execute(
            delete(ScheduleContact)
            .where(ScheduleContact.schedule_id == schedule.id)
            .returning(ScheduleContact.id, ScheduleContact.fields)
        ).all()
        if pushed:
            contacts = [fields for _, fields in sorted(pushed, key=lambda r: r[0])]
            pushed_source = io.BytesIO(_pushed_csv(contacts))
            summary = _ingest(session, campaign, pushed_source, options, sink)
            if summary is not None:
                summaries.append(summary)
    except (_SourceError, DialerError) as failure:
        # A source refused, or settings that no longer hold (its caller ID removed or no
        # longer outbound, stored options out of bounds): this occurrence fails alone.
        batch.rollback()
        _record_failed(session, schedule, run, occurrence, failure.code, failure.message, actor)
        return run
    if not summaries:
        batch.rollback()
        record_schedule_event(
            session,
            schedule.id,
            "fire",
            actor=actor,
            reason=f"occurrence {occurrence.isoformat()}: empty source, nothing to call",
        )
        return run
    batch.commit()
    rejected: dict[str, int] = {}
    for summary in summaries:
        for reason, count in summary.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
    first = summaries[0]
    campaign.ingest_summary = IngestSummary(
        rows=sum(s.rows for s in summaries),
        accepted=sum(s.accepted for s in summaries),
        rejected=rejected,
        encoding=first.encoding,
        delimiter=first.delimiter,
        phone_column=first.phone_column,
    ).to_json()
    run.status = ScheduleRunStatus.OK
    run.campaign_id = campaign.id
    run.rows = campaign.ingest_summary["rows"]
    run.accepted = campaign.ingest_summary["accepted"]
    run.rejected = sum(rejected.values())
    run.pushed = len(pushed)
    record_schedule_event(
        session,
        schedule.id,
        "fire",
        actor=actor,
        campaign_id=campaign.id,
        reason=f"occurrence {occurrence.isoformat()}: {run.accepted} of {run.rows} rows accepted",
    )
    lifecycle.start(session, schedule.account_id, campaign.id, actor=actor)
    return run


def _record_failed(
    session: Session,
    schedule: Schedule,
    run: ScheduleRun,
    occurrence: datetime,
    code: str,
    message: str,
    actor: str,
) -> None:
    """Mark `run` failed with `code` and write the firing to the schedule's history."""
    run.status = ScheduleRunStatus.FAILED
    run.error_code = code
    run.error_message = message
    record_schedule_event(
        session,
        schedule.id,
        "fire",
        actor=actor,
        reason=f"occurrence {occurrence.isoformat()}: failed: {code}",
    )


@contextmanager
def _rejected_rows(data_dir: Path) -> Iterator[tuple[TextIO, list[ScheduleRun]]]:
    """A sink for a firing's rejected rows; once the firing commits, it becomes the
    campaign's `rejected/campaign-<id>-rejected.csv` (as `lifecycle.import_campaign` keeps
    them) when rows were rejected, and is removed otherwise. The caller appends its run."""
    folder = data_dir / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{secrets.token_hex(8)}.partial"
    fired: list[ScheduleRun] = []
    try:
        with partial.open("w", newline="", encoding="utf-8") as sink:
            yield sink, fired
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    run = fired[0] if fired else None
    if run is not None and run.campaign_id is not None and run.rejected:
        partial.replace(folder / f"campaign-{run.campaign_id}-rejected.csv")
    else:
        partial.unlink()


def _fired(schedule: Schedule, run: ScheduleRun) -> Fired:
    return Fired(schedule.id, run.id, schedule.account_id, run.campaign_id, run.status)


def fire_due(database_url: str, data_dir: Path, now: datetime | None = None) -> list[Fired]:
    """Fire every active schedule whose next occurrence is due at `now` (default: the
    clock), each in its own transaction; returns what was fired. Safe to call from any
    number of beats at once: each occurrence fires once (see the module's docstring).

    A schedule locked by another firing in progress is left to it (`SKIP LOCKED`). One
    schedule's failure, of any kind, is that schedule's alone: its occurrence is recorded
    as a `failed` run (the `DialerError`'s code, or `internal_error` for anything
    unexpected, logged with its traceback), its `next_run_at` moves on, and the other
    schedules fire in the same call (`_fire_failed`).
    """
    now = now or utcnow()
    with transaction(database_url) as session:
        due = session.scalars(
            select(Schedule.id)
            .where(Schedule.status == ScheduleStatus.ACTIVE, Schedule.next_run_at <= now)
            .order_by(Schedule.next_run_at)
        ).all()
    fired = []
    for schedule_id in due:
        try:
            one = _fire_due_schedule(database_url, data_dir, schedule_id, now)
        except Exception as error:  # isolate: one schedule never stops the others
            log.exception("schedule_fire_failed", schedule_id=schedule_id)
            try:
                one = _fire_failed(database_url, schedule_id, now, error)
            except Exception:  # the database itself failed: the next beat tries again
                log.exception("schedule_failure_not_recorded", schedule_id=schedule_id)
                continue
        if one is not None:
            fired.append(one)
    return fired


def _due_schedule(session: Session, schedule_id: int, now: datetime) -> Schedule | None:
    """The schedule, locked, if still active and due at `now` and no firing holds it."""
    return session.scalars(
        select(Schedule)
        .where(
            Schedule.id == schedule_id,
            Schedule.status == ScheduleStatus.ACTIVE,
            Schedule.next_run_at <= now,
        )
        .with_for_update(skip_locked=True)
    ).one_or_none()


def _fire_due_schedule(
    database_url: str, data_dir: Path, schedule_id: int, now: datetime
) -> Fired | None:
    """Fire one due schedule in its own transaction (None: not due any more, its
    occurrences skipped, or another beat fired it)."""
    with _rejected_rows(data_dir) as (sink, runs), transaction(database_url) as session:
        schedule = _due_schedule(session, schedule_id, now)
        if schedule is None:
            return None
        zone = parse_zone(schedule.timezone)
        missed_from = schedule.next_run_at
        occurrence, following = due_occurrence(
            schedule.cron, zone, schedule.next_run_at, now, schedule.catch_up_s
        )
        schedule.next_run_at = following
        if occurrence is None:
            record_schedule_event(
                session,
                schedule.id,
                "skip",
                actor=SCHEDULER,
                reason=f"occurrences from {missed_from.isoformat()} missed, all older "
                f"than catch_up_s ({schedule.catch_up_s} s)",
            )
            return None
        run = _fire(session, schedule, occurrence, manual=False, actor=SCHEDULER, sink=sink)
        if run is None:
            return None
        runs.append(run)
        return _fired(schedule, run)


def _fire_failed(
    database_url: str, schedule_id: int, now: datetime, error: Exception
) -> Fired | None:
    """Record a firing that failed past `_fire`'s own handling (its transaction rolled
    back), in a new transaction: a `failed` run for the due occurrence with the error's
    code (`internal_error` unless a `DialerError`), `next_run_at` at the next occurrence,
    and the history. A schedule whose cron or zone no longer reads has no next occurrence:
    it is paused (history `pause`), so it does not fail again at every beat."""
    code = error.code if isinstance(error, DialerError) else "internal_error"
    message = error.message if isinstance(error, DialerError) else "the firing failed"
    with transaction(database_url) as session:
        schedule = _due_schedule(session, schedule_id, now)
        if schedule is None:
            return None
        try:
            occurrence, following = due_occurrence(
                schedule.cron,
                parse_zone(schedule.timezone),
                schedule.next_run_at,
                now,
                schedule.catch_up_s,
            )
        except DialerError as unreadable:
            occurrence, following = None, None
            schedule.status = ScheduleStatus.PAUSED
            record_schedule_event(
                session,
                schedule.id,
                "pause",
                actor=SCHEDULER,
                from_status=ScheduleStatus.ACTIVE.value,
                to_status=ScheduleStatus.PAUSED.value,
                reason=f"no next occurrence: {unreadable.code}",
            )
        occurrence = occurrence or schedule.next_run_at
        if following is not None:
            schedule.next_run_at = following
        run_id = session.scalar(
            insert(ScheduleRun)
            .values(
                schedule_id=schedule.id,
                occurrence=occurrence,
                manual=False,
                status=ScheduleRunStatus.FAILED,
            )
            .on_conflict_do_nothing(index_elements=["schedule_id", "occurrence"])
            .returning(ScheduleRun.id)
        )
        if run_id is None:
            return None
        run = session.get_one(ScheduleRun, run_id)
        _record_failed(session, schedule, run, occurrence, code, message, SCHEDULER)
        return _fired(schedule, run)


def run_now(
    database_url: str,
    data_dir: Path,
    account_id: int,
    schedule_id: int,
    *,
    actor: str,
    now: datetime | None = None,
) -> Fired:
    """Fire the schedule at once (a `manual` run at `now`), whatever its status or next
    occurrence; it consumes the pushed contacts like any run.

    Raises:
        NotFoundError: `schedule_not_found`.
        ConflictError: `already_fired`, a run at this very instant exists.
    """
    at = now or utcnow()
    with _rejected_rows(data_dir) as (sink, runs), transaction(database_url) as session:
        schedule = get_schedule(session, account_id, schedule_id, lock=True)
        run = _fire(session, schedule, at, manual=True, actor=actor, sink=sink)
        if run is None:
            raise ConflictError("already_fired", f"schedule {schedule_id} fired at {at}")
        runs.append(run)
        return _fired(schedule, run)
