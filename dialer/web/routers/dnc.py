"""The account's do-not-call list: add numbers, import a CSV of them, remove one. Every
later upload of the account rejects a listed number (`do_not_call`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from campaigns import dnc
from dialer.web.deps import CurrentAccount, SessionDep
from dialer.web.errors import ANY_OTHER, CSV_REFUSED, INVALID, UNAUTHENTICATED
from dialer.web.schemas import DncAddIn, DncAddOut, DncImportOut, DncRemoveOut

router = APIRouter(
    prefix="/v1/dnc", tags=["do-not-call"], responses={**UNAUTHENTICATED, **INVALID, **ANY_OTHER}
)


@router.post("", response_model=DncAddOut)
def add_numbers(body: DncAddIn, account: CurrentAccount, session: SessionDep) -> DncAddOut:
    """List the numbers; one invalid number (400, its reject reason as code) adds none."""
    added = dnc.add(session, account.id, body.numbers, body.default_region, reason=body.reason)
    return DncAddOut(added=added)


@router.post("/import", response_model=DncImportOut, responses=CSV_REFUSED)
def import_numbers(
    account: CurrentAccount,
    session: SessionDep,
    file: Annotated[UploadFile, File(description="A CSV with a phone column.")],
    default_region: Annotated[
        str, Form(description="Region of national numbers (ISO 3166).")
    ] = "US",
) -> DncImportOut:
    """List every number of a CSV; rows without a usable number are counted, not fatal."""
    summary = dnc.import_csv(session, account.id, file.file, default_region)
    return DncImportOut.model_validate(summary.to_json())


@router.delete("/{e164}", response_model=DncRemoveOut)
def remove_number(e164: str, account: CurrentAccount, session: SessionDep) -> DncRemoveOut:
    """Take a number off the list (national numbers read as US)."""
    return DncRemoveOut(removed=dnc.remove(session, account.id, [e164], "US"))
