"""Operators change what runs: a campaign's caps, CPS, calling window and days, `end_at`,
caller ID or caller-ID pool, message, voicemail message, keypress menu and opt-out line,
and recording while it is a draft, running or paused (`PATCH /v1/campaigns/{id}`,
`dialer campaigns set`), each change recorded in its history with who, why, and the values
before and after.

What a change reaches, and when:
- The pacer reads a campaign's caps, CPS, caller IDs and window from its row at every round
  (`dialer.dispatch.pacer.dispatch_round` builds the pool's scopes and limits from it), so
  a change committed before a round holds from that round; the entry points wake the
  account's pacer after the commit, so that round is the next one.
- `place_call` reads the campaign's message, voicemail message, menu and recording settings
  when the request leaves: every contact not yet dialled gets the new ones (a single call
  with its own message or menu keeps it). A call already live keeps the TwiML it was
  given, but a key pressed on it is answered by the campaign's menu as it stands (the
  gather callback reads it), and its voicemail is the one stored when its greeting ends.
- A contact waiting for the old window's next opening is moved to the new window's (per
  place: one UPDATE per distinct zones/region/state of the campaign's pending contacts);
  any other due time (a retry's, a frequency cap's, `call_at`) stays and is checked against
  the new window when the pacer claims it.
- A new caller ID or pool is checked as at creation (the account's outbound numbers) and
  replaces the old one whole: `from_number` leaves one number, `caller_id_pool` its list.
  The leases of calls already live from an old number stay in its pool scope until they
  end or lapse; a contact's sticky number outside the new pool is no longer presented.
- The menu settings (`campaigns.options.MENU_SETTINGS`) build the menu again, as at
  creation, from those given and the campaign's menu as it stands (`changed_menu`: the
  keys and the opt-out line left out stay); the history holds the stored menu before and
  after.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session

from campaigns.accounts import outbound_number, outbound_pool
from campaigns.lifecycle import get_campaign
from campaigns.options import CampaignChange, changed_menu
from dialer.errors import ConflictError, InvalidOptionError, InvalidWindowError
from dialer.menu import Menu
from dialer.providers.twiml import MissingVariableError, template_placeholders
from dialer.windows import (
    WEEKDAYS,
    CallingWindow,
    Place,
    next_opening,
    parse_days,
    parse_window,
)
from models import Account, CallerId, CallJob, Campaign, CampaignEvent, CampaignStatus, JobStatus

CHANGE_ACTION = "change"
"""`CampaignEvent.action` of a settings change (its values in `CampaignEvent.changes`)."""

CHANGEABLE_STATUSES = frozenset(
    {CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED}
)

Applier = Callable[[Session, Account, Campaign, Any], tuple[Any, Any]]
"""Sets one changed setting on the campaign; returns its value before and after, as JSON."""


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def _column(name: str) -> Applier:
    """A setting stored as is in the `Campaign` column of the same name."""

    def apply(session: Session, account: Account, campaign: Campaign, value: Any) -> Any:
        before = getattr(campaign, name)
        setattr(campaign, name, value)
        return _json(before), _json(value)

    return apply


def _under_account(name: str, limit: float) -> Applier:
    """A cap no higher than the account's own (`limit`), as at creation."""

    def apply(session: Session, account: Account, campaign: Campaign, value: Any) -> Any:
        if value is not None and value > limit:
            detail = {"field": name, "message": f"at most {limit:g}, the account's"}
            raise InvalidOptionError(f"{name}: {detail['message']}", [detail])
        return _column(name)(session, account, campaign, value)

    return apply


def _window_text(start: time, end: time) -> str:
    return f"{start:%H:%M}-{end:%H:%M}"


def _days_text(days: list[int]) -> str:
    return ",".join(WEEKDAYS[day] for day in sorted(days))


def _window(session: Session, account: Account, campaign: Campaign, value: str) -> Any:
    before = _window_text(campaign.window_start, campaign.window_end)
    campaign.window_start, campaign.window_end = parse_window(value)
    return before, _window_text(campaign.window_start, campaign.window_end)


def _days(session: Session, account: Account, campaign: Campaign, value: str) -> Any:
    before = _days_text(campaign.window_days)
    campaign.window_days = sorted(parse_days(value))
    return before, _days_text(campaign.window_days)


def _caller_ids(session: Session, campaign: Campaign) -> str | list[str]:
    """The caller ID the campaign presents (E.164), or its pool's numbers in order."""
    ids = [campaign.caller_id_id, *campaign.pool_caller_ids]
    found = session.execute(select(CallerId.id, CallerId.e164).where(CallerId.id.in_(ids)))
    numbers = {caller_id: e164 for caller_id, e164 in found}
    return [numbers[i] for i in ids] if campaign.pool_caller_ids else numbers[ids[0]]


def _from_number(session: Session, account: Account, campaign: Campaign, value: str) -> Any:
    """One caller ID; it replaces the campaign's caller-ID pool, if it had one."""
    before = _caller_ids(session, campaign)
    caller_id = outbound_number(session, account.id, value)
    campaign.caller_id_id, campaign.pool_caller_ids = caller_id.id, []
    return before, caller_id.e164


def _caller_id_pool(
    session: Session, account: Account, campaign: Campaign, value: list[str]
) -> Any:
    """A caller-ID pool, checked as at creation (`outbound_pool`); it replaces the
    campaign's caller ID or pool."""
    before = _caller_ids(session, campaign)
    pool = outbound_pool(session, account.id, value)
    campaign.caller_id_id, campaign.pool_caller_ids = pool[0].id, [c.id for c in pool[1:]]
    after = [c.e164 for c in pool]
    return (before if isinstance(before, list) else [before]), after


def _variables_held(session: Session, campaign: Campaign, text: str, *where: Any) -> None:
    """Every contact of the campaign not yet final (and matching `where`) has a value for
    each of `text`'s placeholders (one scan of the campaign's open contacts).

    Raises:
        MissingVariableError: `missing_variable`, naming the first placeholder lacking.
    """
    names = sorted(template_placeholders(text))
    if not names:
        return
    lacking = session.scalars(
        select(CallJob.variables)
        .where(
            CallJob.campaign_id == campaign.id,
            CallJob.status.in_([JobStatus.PENDING, JobStatus.IN_PROGRESS]),
            ~CallJob.variables.has_all(array(names)),
            *where,
        )
        .limit(1)
    ).first()
    if lacking is not None:
        raise MissingVariableError(next(n for n in names if n not in lacking))


def _message(session: Session, account: Account, campaign: Campaign, value: str) -> Any:
    """Every contact not yet final that speaks the campaign's message (not a single
    call's own) must have a value for each of the new message's placeholders."""
    _variables_held(session, campaign, value, CallJob.message.is_(None))
    return _column("message")(session, account, campaign, value)


def _voicemail_message(
    session: Session, account: Account, campaign: Campaign, value: str | None
) -> Any:
    """As `_message`, for every contact not yet final (a voicemail is the campaign's)."""
    if value is not None:
        _variables_held(session, campaign, value)
    return _column("voicemail_message")(session, account, campaign, value)


def _menu(session: Session, account: Account, campaign: Campaign, given: dict[str, Any]) -> Any:
    """The menu built again from the settings given and the campaign's (`changed_menu`)."""
    menu = changed_menu(Menu.read(campaign.menu), given)
    return _column("menu")(session, account, campaign, menu.stored() if menu else None)


def _recording_disclosure(
    session: Session, account: Account, campaign: Campaign, value: str
) -> Any:
    """Stored as at creation: empty words are None (nothing said)."""
    return _column("recording_disclosure")(session, account, campaign, value or None)


def _end_at(now: datetime) -> Applier:
    """A new end after `start_at` and after `now`: an end already past would expire every
    pending contact at the pacer's next round (cancelling is `lifecycle.cancel`)."""

    def apply(session: Session, account: Account, campaign: Campaign, value: Any) -> Any:
        if value is not None and value <= max(now, campaign.start_at or now):
            raise InvalidWindowError(
                "invalid_schedule", "end_at must come after now and after start_at"
            )
        return _column("end_at")(session, account, campaign, value)

    return apply


def appliers(account: Account, now: datetime) -> dict[str, Applier]:
    """How each `campaigns.options.PATCHABLE` setting is applied (at `now`); one missing
    here is a `Campaign` column of the same name, set as given (`_column`)."""
    return {
        "max_concurrency": _under_account("max_concurrency", account.max_concurrency),
        "cps": _under_account("cps", account.cps),
        "window": _window,
        "days": _days,
        "from_number": _from_number,
        "caller_id_pool": _caller_id_pool,
        "message": _message,
        "voicemail_message": _voicemail_message,
        "menu": _menu,
        "recording_disclosure": _recording_disclosure,
        "end_at": _end_at(now),
    }


def change_campaign(
    session: Session,
    account: Account,
    campaign_id: int,
    change: CampaignChange,
    *,
    actor: str,
    api_key_id: int | None = None,
    now: datetime,
) -> tuple[Campaign, CampaignEvent]:
    """Apply `change` (`campaigns.options.CampaignPatch`, built with the campaign's
    `timezone` as its validation context) to the account's campaign, locked, and record one
    history event (action `change`, `changes` = `{field: {"before", "after"}}` of the
    settings whose value changed, `actor`, `api_key_id`, `change.reason`; no statuses: it
    is not a transition). Contacts waiting
    for the old window's opening are moved to the new one's (`_rewindow`, at `now`). The
    caller commits, then wakes the account's pacer. Returns the campaign and the event.

    Raises:
        NotFoundError: `campaign_not_found` (also another account's).
        ConflictError: `campaign_ended` (completed or cancelled), `standing_campaign` (the
            account's campaign of single calls follows the account's settings).
        InvalidOptionError: `invalid_option`, a cap above the account's; a caller-ID
            pool's number given twice.
        InvalidMenuError: `invalid_menu`, the opt-out key is another key of the menu.
        InvalidWindowError: `invalid_schedule`, `end_at` not after `now` and `start_at`.
        DialerError: `from_number_not_found` (not the account's, or disabled for outbound
            calls), `invalid_phone_format` (`from_number`, `caller_id_pool`).
        MissingVariableError: `missing_variable`, an open contact has no value for one of
            the new message's (or voicemail message's) placeholders.
    """
    campaign = get_campaign(session, account.id, campaign_id, lock=True)
    if campaign.status not in CHANGEABLE_STATUSES:
        raise ConflictError(
            "campaign_ended",
            f"campaign {campaign.id} is {campaign.status.value}: its settings no longer change",
        )
    if campaign.standing:
        raise ConflictError(
            "standing_campaign",
            f"campaign {campaign.id} holds the account's single calls: it follows the "
            "account's settings (change those, or the call's own)",
        )
    old_window = CallingWindow.of(campaign)
    apply = appliers(account, now)
    changes: dict[str, dict[str, Any]] = {}
    for name, value in change.changes().items():
        before, after = apply.get(name, _column(name))(session, account, campaign, value)
        if before != after:
            changes[name] = {"before": before, "after": after}
    new_window = CallingWindow.of(campaign)
    if new_window != old_window:
        _rewindow(session, campaign, old_window, new_window, now)
    event = CampaignEvent(
        campaign_id=campaign.id,
        action=CHANGE_ACTION,
        actor=actor,
        reason=change.reason,
        changes=changes,
        api_key_id=api_key_id,
    )
    session.add(event)
    session.flush()
    return campaign, event


def _rewindow(
    session: Session,
    campaign: Campaign,
    old: CallingWindow,
    new: CallingWindow,
    now: datetime,
) -> None:
    """Move the campaign's pending contacts that wait for the old window's next opening
    (their due time is exactly it, and no frequency cap holds them) to the new window's:
    one UPDATE per place whose opening moved."""
    places = session.execute(
        select(CallJob.zones, CallJob.region, CallJob.subdivision)
        .where(CallJob.campaign_id == campaign.id, CallJob.status == JobStatus.PENDING)
        .distinct()
    ).all()
    for zones, region, subdivision in places:
        place = Place(tuple(zones), region, subdivision)
        before, after = next_opening(old, place, now), next_opening(new, place, now)
        if before is None or after is None or before == after:
            continue
        session.execute(
            update(CallJob)
            .where(
                CallJob.campaign_id == campaign.id,
                CallJob.status == JobStatus.PENDING,
                CallJob.next_due_at == before,
                CallJob.capped_until.is_(None),
                CallJob.zones == zones,
                _same(CallJob.region, region),
                _same(CallJob.subdivision, subdivision),
            )
            .values(next_due_at=after)
        )


def _same(column: Any, value: str | None) -> ColumnElement[bool]:
    """`column = value`, or `column IS NULL` for None."""
    result: ColumnElement[bool] = column.is_(None) if value is None else column == value
    return result
