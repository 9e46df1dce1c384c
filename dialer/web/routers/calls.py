"""Single calls: place one (optionally waiting for its end), read one, cancel one (also a
campaign's contact), list them (also a campaign's)."""

from __future__ import annotations

import asyncio
import time
from contextlib import nullcontext
from datetime import timedelta
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from campaigns import calls
from campaigns.paging import DEFAULT_LIMIT
from dialer.runtime import Runtime
from dialer.web.deps import (
    Actor,
    CurrentAccount,
    CurrentAccountId,
    PageCursor,
    PageLimit,
    RowId,
    RuntimeDep,
    SessionDep,
)
from dialer.web.errors import (
    ANY_OTHER,
    CONFLICT,
    INVALID,
    UNAUTHENTICATED,
    Responses,
    declared,
)
from dialer.web.idempotency import Claim, held_claim, keep_reply
from dialer.web.quotas import RequestQuotas
from dialer.web.schemas import CallIn, CallOut, CallPage
from models import Account, EndReason, Outcome, on_commit, transaction
from workers.enqueue import hang_up, kick_pacer

router = APIRouter(tags=["calls"], responses={**UNAUTHENTICATED, **ANY_OTHER})

_NOT_FOUND: Responses = {404: declared("No such call (or campaign) in this account.")}
_TOO_MANY_WAITERS: Responses = {
    429: declared("`too_many_waiters` (with `wait`), `rate_limited`; see `Retry-After`.")
}
_POLL_S = (0.1, 0.2, 0.5)
"""Waits between reads while a `wait` request holds (then every 0.5 s): a call's end is
seen within half a second, at two reads a second per waiting request."""


def _place(rt: Runtime, account_id: int, body: CallIn, claim: Claim | None) -> CallOut:
    """Queue the call in its own transaction, with the reply kept for the request's
    `Idempotency-Key` in that same transaction; wake the account's pacer after commit."""
    call = calls.SingleCall(**body.model_dump(exclude={"wait"}))
    with transaction(rt.settings.database_url) as session:
        account = session.get_one(Account, account_id)
        job = calls.place_call(
            session,
            account,
            call,
            allow_private_webhooks=rt.settings.webhook_allow_private_networks,
            now=rt.clock(),
        )
        state = CallOut.model_validate(calls.calls_json(session, [job], rt.clock())[0])
        keep_reply(session, claim, 201, state)
        on_commit(session, lambda: kick_pacer(account_id))
        return state


def _read(rt: Runtime, account_id: int, call_id: int) -> CallOut:
    with transaction(rt.settings.database_url) as session:
        job = calls.get_call(session, account_id, call_id)
        return CallOut.model_validate(calls.calls_json(session, [job], rt.clock())[0])


@router.post(
    "/v1/calls",
    status_code=201,
    response_model=CallOut,
    response_model_by_alias=True,
    responses={**INVALID, **_NOT_FOUND, **CONFLICT, **_TOO_MANY_WAITERS},
)
async def place_call(
    body: CallIn, account_id: CurrentAccountId, rt: RuntimeDep, request: Request
) -> CallOut:
    """Queue one call through the account's pool, CPS limits, DNC list, calling window and
    retry policy (201, `status` `queued`). With `wait`, the reply comes once the call is
    final or after `wait` seconds, whichever is first, with its state then; at once when
    its next attempt lies beyond that deadline (`waiting_reason` says why: outside the
    callee's calling window, a frequency cap, a paused campaign, a retry's delay).

    Refusals stop at the first, in this order: `missing_field`, `invalid_phone_format`,
    `campaign_not_found` (404) / `invalid_state` (409), `emergency_or_short_code`,
    `premium_rate`, `country_not_allowed`, `do_not_call`, `from_number_not_found`,
    `no_outbound_number`, `from_number_mismatch`, `campaign_paused` (409: the circuit
    breaker paused the campaign, standing or named, that would take the call; the message
    names the provider's error), `invalid_template`, `missing_variable`,
    `webhook_url_not_allowed` (all 400 unless said); a body that is not JSON is 422
    `invalid_json`.

    With `wait`, the request holds one of the account's `MAX_WAITERS_PER_ACCOUNT` slots;
    when all are held it is refused at once, before anything is placed: 429
    `too_many_waiters` with `Retry-After` (send it again, or without `wait` and read
    `GET /v1/calls/{id}`).

    With an `Idempotency-Key`, the reply is kept in the transaction that queues the call:
    a failure after that commit is answered with it (and so is a retry with the key),
    never by queueing the call again."""
    quotas: RequestQuotas = request.app.state.quotas
    with quotas.waiter(account_id) if body.wait else nullcontext():
        return await _place_and_wait(rt, account_id, body, held_claim(request))


async def _place_and_wait(
    rt: Runtime, account_id: int, body: CallIn, claim: Claim | None
) -> CallOut:
    state = await run_in_threadpool(_place, rt, account_id, body, claim)
    if not body.wait:
        return state
    call_id = state.call_id
    deadline = time.monotonic() + body.wait
    polls = 0
    while state.status not in calls.FINAL_STATUSES:
        left = deadline - time.monotonic()
        if left <= 0 or _waits_past(rt, state, left):
            break
        await asyncio.sleep(min(left, _POLL_S[min(polls, len(_POLL_S) - 1)]))
        polls += 1
        state = await run_in_threadpool(_read, rt, account_id, call_id)
    return state


def _waits_past(rt: Runtime, state: CallOut, left_s: float) -> bool:
    """Whether the call's next attempt lies beyond the `wait` deadline (`left_s` seconds
    away), or at no known time (a paused campaign): holding the request is pointless."""
    if state.waiting_reason in (
        calls.WaitingReason.CAMPAIGN_PAUSED,
        calls.WaitingReason.CAMPAIGN_NOT_STARTED,
    ):
        return True
    due = state.next_attempt_at
    return due is not None and due > rt.clock() + timedelta(seconds=left_s)


@router.get(
    "/v1/calls/{call_id}",
    response_model=CallOut,
    response_model_by_alias=True,
    responses=_NOT_FOUND,
)
def get_call(
    call_id: RowId, account: CurrentAccount, session: SessionDep, rt: RuntimeDep
) -> CallOut:
    """One call: status, outcome, attempts, metadata; while queued, why it waits
    (`waiting_reason`) and when its next attempt is due (`next_attempt_at`)."""
    job = calls.get_call(session, account.id, call_id)
    return CallOut.model_validate(calls.calls_json(session, [job], rt.clock())[0])


@router.delete(
    "/v1/calls/{call_id}",
    response_model=CallOut,
    response_model_by_alias=True,
    responses={**_NOT_FOUND, **CONFLICT},
)
def cancel_call(
    call_id: RowId, account: CurrentAccount, actor: Actor, session: SessionDep, rt: RuntimeDep
) -> CallOut:
    """Cancel one call (a single call or a campaign's contact): not yet dialled, it ends
    `canceled` at once; live (or with its create request on its way), it is hung up at the
    provider and ends `canceled` with the call's outcome when the provider reports the end
    (the reply then says `in_progress`). 409 `call_ended` when it is already final; 404
    `call_not_found` for an unknown id or another account's call. Recorded in its
    campaign's history (`cancel_call`)."""
    done = calls.cancel_call(session, rt, account.id, call_id, actor=actor)
    if done.hang_up is not None:
        on_commit(session, partial(hang_up, done.hang_up, EndReason.CALL_CANCELED))
    return CallOut.model_validate(calls.calls_json(session, [done.job], rt.clock())[0])


StatusFilter = Annotated[calls.CallStatus | None, Query(description="Only calls in this status.")]
OutcomeFilter = Annotated[Outcome | None, Query(description="Only calls with this outcome.")]
ToFilter = Annotated[
    str | None,
    Query(
        max_length=32,
        description="Only calls to this number: E.164 (an unencoded `+`, read as a space, "
        "is taken as meant) or a US national form; not a number: 400 `invalid_phone_format`.",
    ),
]


def _page(
    session: SessionDep,
    rt: Runtime,
    account_id: int,
    where: calls.CallFilter,
    limit: int,
    cursor: str | None,
) -> CallPage:
    found = calls.list_calls(session, account_id, where, limit=limit, cursor=cursor)
    items = calls.calls_json(session, found.items, rt.clock())
    return CallPage.model_validate({"items": items, "next_cursor": found.next_cursor})


@router.get("/v1/calls", response_model=CallPage, response_model_by_alias=True, responses=INVALID)
def list_calls(
    account: CurrentAccount,
    session: SessionDep,
    rt: RuntimeDep,
    status: StatusFilter = None,
    outcome: OutcomeFilter = None,
    to_number: ToFilter = None,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> CallPage:
    """The account's calls (single calls and campaign contacts), newest first."""
    where = calls.CallFilter(status=status, outcome=outcome, to_number=to_number)
    return _page(session, rt, account.id, where, limit, cursor)


@router.get(
    "/v1/campaigns/{campaign_id}/calls",
    response_model=CallPage,
    response_model_by_alias=True,
    responses={**INVALID, **_NOT_FOUND},
    tags=["campaigns"],
)
def list_campaign_calls(
    campaign_id: RowId,
    account: CurrentAccount,
    session: SessionDep,
    rt: RuntimeDep,
    status: StatusFilter = None,
    outcome: OutcomeFilter = None,
    to_number: ToFilter = None,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> CallPage:
    """A campaign's calls, newest first."""
    where = calls.CallFilter(
        campaign_id=campaign_id, status=status, outcome=outcome, to_number=to_number
    )
    return _page(session, rt, account.id, where, limit, cursor)
