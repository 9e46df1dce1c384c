"""Schedules (recurring reminder batches, `campaigns.schedules`): create, list, read,
change, delete, run now, runs, history, and contacts pushed to the next batch. Another
account's schedule, or a deleted one, is 404 `schedule_not_found`."""

from __future__ import annotations

import io
import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from campaigns import schedules
from campaigns.paging import DEFAULT_LIMIT
from dialer.errors import DialerError
from dialer.web.deps import (
    Actor,
    CurrentAccount,
    PageCursor,
    PageLimit,
    RowId,
    RuntimeDep,
    SessionDep,
)
from dialer.web.errors import (
    ANY_OTHER,
    CSV_REFUSED,
    INVALID,
    UNAUTHENTICATED,
    Responses,
    declared,
)
from dialer.web.schemas import (
    ContactsAdded,
    ContactsIn,
    EventOut,
    Page,
    ScheduleCreated,
    ScheduleIn,
    ScheduleOut,
    SchedulePatch,
    ScheduleRunOut,
    ScheduleUpdated,
    ScheduleWarningOut,
)
from models import Account, Schedule, ScheduleRun, on_commit
from workers.enqueue import kick_pacer

router = APIRouter(
    prefix="/v1/schedules", tags=["schedules"], responses={**UNAUTHENTICATED, **ANY_OTHER}
)

_NOT_FOUND: Responses = {404: declared("No such schedule in this account.")}
_CONFLICT: Responses = {409: declared("The schedule's state does not allow it.")}


@router.post("", status_code=201, response_model=ScheduleCreated, responses=INVALID)
def create_schedule(
    body: ScheduleIn, account: CurrentAccount, actor: Actor, session: SessionDep
) -> ScheduleCreated:
    """A schedule whose batches are the contacts pushed to it; 400 `invalid_cron`,
    `invalid_timezone` or `invalid_option`."""
    schedule = schedules.create_schedule(
        session,
        account,
        name=body.name,
        cron=body.cron,
        timezone=body.timezone,
        csv_path=None,
        options=body.options.model_dump(mode="json", exclude_unset=True),
        catch_up_s=body.catch_up_s,
        actor=actor,
    )
    return ScheduleCreated(
        schedule_id=schedule.id,
        next_run_at=schedule.next_run_at,
        warnings=_warnings(schedule, account),
    )


def _warnings(schedule: Schedule, account: Account) -> list[ScheduleWarningOut]:
    return [
        ScheduleWarningOut(code=w.code, message=w.message)
        for w in schedules.frequency_cap_warnings(schedule, account)
    ]


@router.get("", response_model=Page[ScheduleOut], responses=INVALID)
def list_schedules(
    account: CurrentAccount,
    session: SessionDep,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> Page[ScheduleOut]:
    """The account's schedules, oldest first (400 `invalid_cursor`)."""
    found = schedules.list_schedules(session, account.id, limit=limit, cursor=cursor)
    return Page[ScheduleOut].of(found)


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=_NOT_FOUND)
def get_schedule(schedule_id: RowId, account: CurrentAccount, session: SessionDep) -> ScheduleOut:
    """One schedule."""
    return ScheduleOut.model_validate(schedules.get_schedule(session, account.id, schedule_id))


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleUpdated,
    responses={**INVALID, **_NOT_FOUND, **_CONFLICT},
)
def update_schedule(
    schedule_id: RowId,
    body: SchedulePatch,
    account: CurrentAccount,
    actor: Actor,
    session: SessionDep,
) -> ScheduleUpdated:
    """Change fields, pause (`"status": "paused"`) or resume (`"active"`); 409
    `invalid_state` pausing a paused schedule or resuming an active one."""
    changes = body.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    schedule = schedules.update_schedule(session, account.id, schedule_id, actor=actor, **changes)
    out = ScheduleUpdated.model_validate(schedule)
    return out.model_copy(update={"warnings": _warnings(schedule, account)})


@router.delete("/{schedule_id}", status_code=204, responses=_NOT_FOUND)
def delete_schedule(
    schedule_id: RowId, account: CurrentAccount, actor: Actor, session: SessionDep
) -> None:
    """It fires no more; its runs, campaigns and history stay."""
    schedules.delete_schedule(session, account.id, schedule_id, actor=actor)


@router.post(
    "/{schedule_id}/run",
    status_code=201,
    response_model=ScheduleRunOut,
    responses={**_NOT_FOUND, **_CONFLICT},
)
def run_schedule(
    schedule_id: RowId, account: CurrentAccount, actor: Actor, rt: RuntimeDep, session: SessionDep
) -> ScheduleRunOut:
    """Fire now: a campaign from the pushed contacts, started; the run is the reply (an
    `empty` run when nothing was pushed)."""
    fired = schedules.run_now(
        rt.settings.database_url, rt.settings.data_dir, account.id, schedule_id, actor=actor
    )
    if fired.campaign_id is not None:
        on_commit(session, lambda: kick_pacer(fired.account_id))
    return ScheduleRunOut.model_validate(session.get_one(ScheduleRun, fired.run_id))


@router.get(
    "/{schedule_id}/runs",
    response_model=Page[ScheduleRunOut],
    responses={**_NOT_FOUND, **INVALID},
)
def list_runs(
    schedule_id: RowId,
    account: CurrentAccount,
    session: SessionDep,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> Page[ScheduleRunOut]:
    """The schedule's runs, newest occurrence first."""
    found = schedules.list_runs(session, account.id, schedule_id, limit=limit, cursor=cursor)
    return Page[ScheduleRunOut].of(found)


@router.get(
    "/{schedule_id}/events", response_model=Page[EventOut], responses={**_NOT_FOUND, **INVALID}
)
def list_events(
    schedule_id: RowId,
    account: CurrentAccount,
    session: SessionDep,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> Page[EventOut]:
    """The schedule's history: created, fired, skipped, paused, resumed, changed, deleted."""
    found = schedules.schedule_events(session, account.id, schedule_id, limit=limit, cursor=cursor)
    return Page[EventOut].of(found)


_CONTACTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ContactsIn.model_json_schema()},
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/{schedule_id}/contacts",
    status_code=201,
    response_model=ContactsAdded,
    responses={**INVALID, **_NOT_FOUND, **CSV_REFUSED},
    openapi_extra=_CONTACTS_BODY,
)
async def add_contacts(
    schedule_id: RowId, request: Request, account: CurrentAccount, session: SessionDep
) -> ContactsAdded:
    """Add contacts to the schedule's next batch: JSON `{"contacts": [{column: value}]}`,
    or a CSV body (`Content-Type: text/csv`, any encoding and delimiter ingest reads, at
    most 10 MiB). Each needs a phone column and the message's placeholders (422
    `no_phone_column`, `missing_variable`)."""
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            rows = ContactsIn.model_validate(json.loads(body)).contacts
        except (ValueError, ValidationError) as error:
            raise DialerError("invalid_body", f"expected {{'contacts': [...]}}: {error}") from None
        added = await run_in_threadpool(
            schedules.add_contacts, session, account.id, schedule_id, rows
        )
    else:
        added = await run_in_threadpool(
            schedules.add_contacts_csv, session, account.id, schedule_id, io.BytesIO(body)
        )
    return ContactsAdded(added=added)
