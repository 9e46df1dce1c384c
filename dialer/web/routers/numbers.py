"""The account's caller IDs: list, add (or change), remove."""

from __future__ import annotations

from fastapi import APIRouter, Response

from campaigns.accounts import KEEP, list_numbers, number_json, remove_number, save_number
from campaigns.paging import DEFAULT_LIMIT
from dialer.web.deps import (
    Actor,
    CurrentAccount,
    PageCursor,
    PageLimit,
    RuntimeDep,
    SessionDep,
)
from dialer.web.errors import ANY_OTHER, INVALID, UNAUTHENTICATED, declared
from dialer.web.schemas import NumberIn, NumberOut, Page

router = APIRouter(
    prefix="/v1/numbers", tags=["numbers"], responses={**UNAUTHENTICATED, **ANY_OTHER}
)


@router.get("", response_model=Page[NumberOut], responses=INVALID)
def get_numbers(
    account: CurrentAccount,
    session: SessionDep,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> Page[NumberOut]:
    """The account's caller IDs in the order they were added: when a call or campaign
    names none, the first outbound one is presented."""
    found = list_numbers(session, account.id, limit=limit, cursor=cursor)
    return Page[NumberOut](
        items=[NumberOut.model_validate(number_json(n)) for n in found.items],
        next_cursor=found.next_cursor,
    )


@router.post(
    "",
    status_code=201,
    response_model=NumberOut,
    responses={
        200: {"model": NumberOut, "description": "The number was the account's: updated."},
        **INVALID,
        409: declared("Another account has the number (`number_taken`)."),
        502: declared("The provider could not be asked whether it owns the number."),
    },
)
def add_number(
    body: NumberIn,
    account: CurrentAccount,
    session: SessionDep,
    rt: RuntimeDep,
    response: Response,
    actor: Actor,
) -> NumberOut:
    """Add a caller ID (201) the provider account owns (IncomingPhoneNumbers) or verified
        (OutgoingCallerIds), else 400 `caller_id_not_verified`, and no other account has (409
        `number_taken`); a number the account has already gets the settings given (200), the
        others keep theirs. Turning `outbound` off pauses the running campaigns presenting it
    (and no other outbound number of their pool); `rested` takes it out of caller-ID selection
    or puts it back."""
    given = body.model_fields_set
    caller_id, created = save_number(
        session,
        account.id,
        body.number,
        outbound=body.outbound if "outbound" in given else KEEP,
        max_concurrency=body.max_concurrency if "max_concurrency" in given else KEEP,
        max_calls_per_minute=(
            body.max_calls_per_minute if "max_calls_per_minute" in given else KEEP
        ),
        max_calls_per_day=body.max_calls_per_day if "max_calls_per_day" in given else KEEP,
        rested=body.rested if "rested" in given else KEEP,
        provider=rt.provider,
        actor=actor,
    )
    if not created:
        response.status_code = 200
    return NumberOut.model_validate(number_json(caller_id))


@router.delete(
    "/{number}",
    status_code=204,
    responses={
        404: declared("Not one of the account's numbers."),
        409: declared("A campaign presents it (`number_in_use`): disable it for outbound."),
        **INVALID,
    },
)
def delete_number(number: str, account: CurrentAccount, session: SessionDep) -> Response:
    """Remove a caller ID no campaign uses."""
    remove_number(session, account.id, number)
    return Response(status_code=204)
