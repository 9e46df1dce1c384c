"""The HTTP handlers' dependencies: this process's runtime, the request's transaction, and
the account whose API key came with the request.

The transaction and the account are used with `scope="function"`: the transaction commits
(and runs its `models.on_commit` hooks) before the reply is sent, so a 2xx means the change
is committed and a failed commit is not answered with 2xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from campaigns.accounts import account_by_api_key
from dialer.errors import UnauthenticatedError
from dialer.runtime import Runtime
from models import Account, transaction

_bearer = HTTPBearer(
    auto_error=False, description="An account's API key (`dialer accounts create-key`)."
)


def runtime(request: Request) -> Runtime:
    """The runtime `create_app` put on the app."""
    current: Runtime = request.app.state.runtime
    return current


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def db_session(rt: RuntimeDep) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back when it
    raises."""
    with transaction(rt.settings.database_url) as session:
        yield session


SessionDep = Annotated[Session, Depends(db_session, scope="function")]


def current_account(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Account:
    """The account of `Authorization: Bearer <api key>`.

    Raises:
        UnauthenticatedError: `unauthenticated` (no bearer key), `unknown_api_key`.
    """
    if credentials is None:
        raise UnauthenticatedError("unauthenticated", "send Authorization: Bearer <api key>")
    return account_by_api_key(session, credentials.credentials)


CurrentAccount = Annotated[Account, Depends(current_account, scope="function")]


def current_actor(account: CurrentAccount) -> str:
    """Who a request acts as in the history (`models.CampaignEvent.actor`): `api:<account>`."""
    return f"api:{account.name}"


Actor = Annotated[str, Depends(current_actor, scope="function")]
