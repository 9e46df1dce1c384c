"""The API key's account: read it, change its caps and webhook URL."""

from __future__ import annotations

from fastapi import APIRouter

from campaigns.accounts import AccountChange, account_json, default_ceilings, update_account
from campaigns.options import FrequencyCaps
from dialer.web.deps import CurrentAccount, RuntimeDep, SessionDep
from dialer.web.errors import ANY_OTHER, INVALID, UNAUTHENTICATED
from dialer.web.schemas import AccountOut, AccountPatch

router = APIRouter(
    prefix="/v1/account", tags=["account"], responses={**UNAUTHENTICATED, **ANY_OTHER}
)


@router.get("", response_model=AccountOut)
def get_account(account: CurrentAccount, session: SessionDep, rt: RuntimeDep) -> AccountOut:
    """The account: caps and their ceilings, webhook URL, caller IDs."""
    defaults = default_ceilings(rt.settings)
    return AccountOut.model_validate(account_json(session, account, defaults))


@router.patch("", response_model=AccountOut, responses=INVALID)
def patch_account(
    body: AccountPatch, account: CurrentAccount, session: SessionDep, rt: RuntimeDep
) -> AccountOut:
    """Change the account's caps, frequency caps or webhook URL (400 `above_ceiling` for a
    cap above the ceiling the operator set, 400 `invalid_option` for frequency caps out of
    bounds or two of one period, 400 `webhook_url_not_allowed` for a URL that is not
    http(s) or points inside a private network). New frequency caps hold from the pacer's
    next claim."""
    given = body.model_fields_set
    change = AccountChange(
        max_concurrency=body.max_concurrency,
        cps=body.cps,
        frequency_caps=(
            FrequencyCaps(caps=body.frequency_caps) if body.frequency_caps is not None else None
        ),
        webhook_url=(body.webhook_url or "") if "webhook_url" in given else None,
        rest_flagged_numbers=body.rest_flagged_numbers,
    )
    defaults = default_ceilings(rt.settings)
    update_account(
        session,
        account,
        change,
        allow_private=rt.settings.webhook_allow_private_networks,
        defaults=defaults,
    )
    return AccountOut.model_validate(account_json(session, account, defaults))
