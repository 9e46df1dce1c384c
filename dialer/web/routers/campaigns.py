"""Campaigns: create from a CSV, read, start / pause / resume / cancel, report, and the
rejected rows and results as CSV files."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from typing import IO, Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from campaigns import changes, lifecycle
from campaigns.history import campaign_events
from campaigns.options import CampaignOptions, CampaignPatch
from campaigns.paging import DEFAULT_LIMIT
from campaigns.preview import campaign_preview
from campaigns.reports import (
    SERIES_MINUTES,
    campaign_report,
    export_attempts,
    export_results,
    export_xlsx,
)
from dialer.errors import NotFoundError
from dialer.web.deps import (
    Actor,
    CurrentAccount,
    CurrentApiKey,
    PageCursor,
    PageLimit,
    RowId,
    RuntimeDep,
    SessionDep,
    current_actor,
)
from dialer.web.errors import (
    ANY_OTHER,
    CONFLICT,
    CSV_REFUSED,
    INVALID,
    NOT_FOUND,
    UNAUTHENTICATED,
    Responses,
)
from dialer.web.schemas import (
    CampaignCreated,
    CampaignForm,
    CampaignOut,
    CampaignPatchIn,
    EventOut,
    Page,
    PreviewOut,
    ReportOut,
)
from models import Campaign, CampaignStatus, EndReason, on_commit
from workers.enqueue import hang_up as hang_up_call
from workers.enqueue import kick_pacer

router = APIRouter(
    prefix="/v1/campaigns", tags=["campaigns"], responses={**UNAUTHENTICATED, **ANY_OTHER}
)

_CSV: Responses = {200: {"content": {"text/csv": {}}, "description": "A CSV file."}}


@router.post(
    "", status_code=201, response_model=CampaignCreated, responses={**INVALID, **CSV_REFUSED}
)
def create_campaign(
    account: CurrentAccount,
    rt: RuntimeDep,
    file: Annotated[UploadFile, File(description="The contacts CSV (any encoding, delimiter).")],
    options: Annotated[CampaignForm, Form()],
) -> CampaignCreated:
    """Create a draft campaign from a CSV; the reply is what ingest made of it. A setting
    out of bounds is 400 `invalid_option`; a CSV refused as a whole is 422 and creates
    nothing."""
    imported = lifecycle.import_campaign(
        rt.settings.database_url,
        rt.settings.data_dir,
        account.id,
        CampaignOptions(**options.model_dump()),
        file.file,
    )
    created = imported.to_json()
    # Where a client downloads the rejected rows: never the server's file path.
    created["rejected_csv"] = (
        f"{router.prefix}/{imported.campaign_id}/rejected.csv" if imported.rejected_csv else None
    )
    return CampaignCreated.model_validate(created)


@router.get("", response_model=Page[CampaignOut], responses=INVALID)
def list_campaigns(
    account: CurrentAccount,
    session: SessionDep,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> Page[CampaignOut]:
    """The account's campaigns, oldest first (400 `invalid_cursor`)."""
    found = lifecycle.list_campaigns(session, account.id, limit=limit, cursor=cursor)
    return Page[CampaignOut].of(found)


@router.get("/{campaign_id}", response_model=CampaignOut, responses=NOT_FOUND)
def get_campaign(campaign_id: RowId, account: CurrentAccount, session: SessionDep) -> CampaignOut:
    """One campaign, with its ingest summary."""
    return CampaignOut.model_validate(lifecycle.get_campaign(session, account.id, campaign_id))


@router.patch(
    "/{campaign_id}",
    response_model=CampaignOut,
    responses={**NOT_FOUND, **INVALID, **CONFLICT},
)
def change_campaign(
    campaign_id: RowId,
    body: CampaignPatchIn,
    caller: CurrentApiKey,
    session: SessionDep,
    rt: RuntimeDep,
) -> CampaignOut:
    """Change a draft, running or paused campaign: its caps (`max_concurrency`), `cps`,
    calling `window` and `days`, `end_at`, caller ID (`from_number`) or caller-ID pool
    (`caller_id_pool`; one replaces the other), `message`, `voicemail_message`, keypress
    `menu` and opt-out line (`opt_out_line`, `opt_out_digit`, `opt_out_prompt`: the menu is
    built again, the keys and line a change leaves out kept), `record` and
    `recording_disclosure`, with a `reason`. Checked as at creation (400 `invalid_body`,
    `invalid_option`, `invalid_menu`, `invalid_window`, `invalid_schedule`,
    `from_number_not_found`; 422 `missing_variable` when a contact not yet called lacks a
    value the new message needs); 409
    `campaign_ended` for a completed or cancelled campaign, `standing_campaign` for the
    account's campaign of single calls. Recorded in the campaign's history
    (`GET /v1/campaigns/{id}/events`: action `change`, the values before and after, the
    API key). The pacer uses the new limits from its next round (woken after the commit);
    contacts not yet called get the new message and menu."""
    account = caller.account
    current = lifecycle.get_campaign(session, account.id, campaign_id)
    change = CampaignPatch.model_validate(
        body.model_dump(exclude_unset=True), context={"timezone": current.timezone}
    )
    campaign, _ = changes.change_campaign(
        session,
        account,
        campaign_id,
        change,
        actor=current_actor(caller),
        api_key_id=caller.key_id,
        now=rt.clock(),
    )
    return _transitioned(session, campaign)


@router.get("/{campaign_id}/report", response_model=ReportOut, responses={**NOT_FOUND, **INVALID})
def report(
    campaign_id: RowId,
    account: CurrentAccount,
    session: SessionDep,
    rt: RuntimeDep,
    minutes: Annotated[
        int, Query(ge=1, le=1440, description="Minutes in the per-minute series.")
    ] = SERIES_MINUTES,
) -> ReportOut:
    """The campaign's figures: contacts by state, outcomes, rates, attempts, talk time, the
    per-minute series, pacing health, the circuit breaker and the estimated finish. Read
    from counters the database keeps current: a few rows whatever the campaign's size."""
    figures = campaign_report(session, rt.pool, account.id, campaign_id, minutes=minutes)
    return ReportOut.model_validate(figures.model_dump())


@router.get(
    "/{campaign_id}/events", response_model=Page[EventOut], responses={**NOT_FOUND, **INVALID}
)
def events(
    campaign_id: RowId,
    account: CurrentAccount,
    session: SessionDep,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> Page[EventOut]:
    """The campaign's history, oldest first: the schedule's firing that created it, if any,
    then each transition with who made it (`cli:<user>`, `api:<account>`, `scheduler`,
    `breaker`, `pacer`), when and why."""
    found = campaign_events(session, account.id, campaign_id, limit=limit, cursor=cursor)
    return Page[EventOut].of(found)


@router.get("/{campaign_id}/preview", response_model=PreviewOut, responses=NOT_FOUND)
def preview(
    campaign_id: RowId, account: CurrentAccount, session: SessionDep, rt: RuntimeDep
) -> PreviewOut:
    """Contacts callable now, waiting for their window (by zone) and expired, and the
    estimated finish time at the campaign's caps, CPS and windows."""
    figures = campaign_preview(session, account.id, campaign_id, rt.clock())
    return PreviewOut.model_validate(figures.model_dump())


@router.get(
    "/{campaign_id}/rejected.csv", response_class=FileResponse, responses={**_CSV, **NOT_FOUND}
)
def rejected_csv(
    campaign_id: RowId, account: CurrentAccount, session: SessionDep, rt: RuntimeDep
) -> FileResponse:
    """The rows ingest refused (line, reason, the row's fields), the campaign's account
    only (another's is 404 `campaign_not_found`). 404 `no_rejected_rows` when it refused
    none."""
    lifecycle.get_campaign(session, account.id, campaign_id)
    path = rt.settings.data_dir / "rejected" / f"campaign-{campaign_id}-rejected.csv"
    if not path.exists():
        raise NotFoundError("no_rejected_rows", f"campaign {campaign_id} rejected no rows")
    return FileResponse(path, media_type="text/csv", filename=path.name)


_XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_XLSX: Responses = {200: {"content": {_XLSX_TYPE: {}}, "description": "An XLSX workbook."}}


def _download(
    name: str, media_type: str, write: Callable[[IO[Any]], object], *, binary: bool = False
) -> StreamingResponse:
    # Spooled to disk past 1 MB: a million-contact export never sits in memory, and an
    # error (an unknown campaign) is raised before the response starts.
    spool: IO[Any] = (
        tempfile.SpooledTemporaryFile(max_size=1_000_000, mode="w+b")  # noqa: SIM115  # closed by the response
        if binary
        else tempfile.SpooledTemporaryFile(  # noqa: SIM115  # closed by the response
            max_size=1_000_000, mode="w+", newline="", encoding="utf-8"
        )
    )
    try:
        write(spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return StreamingResponse(
        iter(lambda: spool.read(65536), b"" if binary else ""),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
        background=BackgroundTask(spool.close),
    )


@router.get(
    "/{campaign_id}/results.csv",
    response_class=StreamingResponse,
    responses={**_CSV, **NOT_FOUND},
)
def results_csv(
    campaign_id: RowId, account: CurrentAccount, session: SessionDep
) -> StreamingResponse:
    """Every contact's result, one row each: its outcome and every attempt's time, status,
    `AnsweredBy`, duration, error code and digits (values escaped against formula
    injection, E.164 numbers as they are)."""
    return _download(
        f"campaign-{campaign_id}-results.csv",
        "text/csv",
        partial(export_results, session, account.id, campaign_id),
    )


@router.get(
    "/{campaign_id}/attempts.csv",
    response_class=StreamingResponse,
    responses={**_CSV, **NOT_FOUND},
)
def attempts_csv(
    campaign_id: RowId, account: CurrentAccount, session: SessionDep
) -> StreamingResponse:
    """Every attempt, one row each, in the order they were made (escaped as results.csv)."""
    return _download(
        f"campaign-{campaign_id}-attempts.csv",
        "text/csv",
        partial(export_attempts, session, account.id, campaign_id),
    )


@router.get(
    "/{campaign_id}/results.xlsx",
    response_class=StreamingResponse,
    responses={**_XLSX, **NOT_FOUND},
)
def results_xlsx(
    campaign_id: RowId, account: CurrentAccount, session: SessionDep
) -> StreamingResponse:
    """results.csv as an XLSX workbook: text cells (a spreadsheet keeps an E.164 number's
    `+`, and no cell is a formula), integers as numbers."""
    return _download(
        f"campaign-{campaign_id}-results.xlsx",
        _XLSX_TYPE,
        partial(export_xlsx, session, account.id, campaign_id, attempts=False),
        binary=True,
    )


@router.get(
    "/{campaign_id}/attempts.xlsx",
    response_class=StreamingResponse,
    responses={**_XLSX, **NOT_FOUND},
)
def attempts_xlsx(
    campaign_id: RowId, account: CurrentAccount, session: SessionDep
) -> StreamingResponse:
    """attempts.csv as an XLSX workbook (cells as results.xlsx)."""
    return _download(
        f"campaign-{campaign_id}-attempts.xlsx",
        _XLSX_TYPE,
        partial(export_xlsx, session, account.id, campaign_id, attempts=True),
        binary=True,
    )


# --- transitions: each answers with the campaign in its new state --------------------------

_TRANSITION_ERRORS: Responses = {**NOT_FOUND, **CONFLICT}


def _transitioned(session: Session, campaign: Campaign) -> CampaignOut:
    """The reply to a transition or a change; a campaign now running gets its account's
    pacer woken once the change commits."""
    if campaign.status is CampaignStatus.RUNNING:
        account_id = campaign.account_id
        on_commit(session, lambda: kick_pacer(account_id))
    return CampaignOut.model_validate(campaign)


@router.post("/{campaign_id}/start", response_model=CampaignOut, responses=_TRANSITION_ERRORS)
def start_campaign(
    campaign_id: RowId, account: CurrentAccount, actor: Actor, session: SessionDep
) -> CampaignOut:
    """draft -> running: the pacer starts dialling it."""
    return _transitioned(session, lifecycle.start(session, account.id, campaign_id, actor=actor))


@router.post("/{campaign_id}/pause", response_model=CampaignOut, responses=_TRANSITION_ERRORS)
def pause_campaign(
    campaign_id: RowId, account: CurrentAccount, actor: Actor, session: SessionDep
) -> CampaignOut:
    """running -> paused: no new calls; calls already live finish."""
    return _transitioned(session, lifecycle.pause(session, account.id, campaign_id, actor=actor))


@router.post("/{campaign_id}/resume", response_model=CampaignOut, responses=_TRANSITION_ERRORS)
def resume_campaign(
    campaign_id: RowId, account: CurrentAccount, actor: Actor, session: SessionDep
) -> CampaignOut:
    """paused -> running (also after the circuit breaker, once its cause is fixed)."""
    return _transitioned(session, lifecycle.resume(session, account.id, campaign_id, actor=actor))


@router.post("/{campaign_id}/cancel", response_model=CampaignOut, responses=_TRANSITION_ERRORS)
def cancel_campaign(
    campaign_id: RowId,
    account: CurrentAccount,
    actor: Actor,
    session: SessionDep,
    hang_up: bool = False,
) -> CampaignOut:
    """-> canceled: pending contacts are cancelled and dials not yet sent are not made;
    live calls finish and are reported, or are hung up with `?hang_up=true` (a call still
    being placed too, as soon as the provider gives its sid)."""
    campaign = lifecycle.cancel(session, account.id, campaign_id, actor=actor)
    live = lifecycle.hang_up_on_cancel(session, campaign_id) if hang_up else []
    for attempt_id in live:
        on_commit(session, partial(hang_up_call, attempt_id, EndReason.CAMPAIGN_CANCELED))
    return _transitioned(session, campaign)
