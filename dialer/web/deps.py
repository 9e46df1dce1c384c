"""The HTTP handlers' dependencies: this process's runtime, the request's transaction, and
the account whose API key came with the request (and the key's name, for the record:
`CurrentApiKey`, also left on `request.state.api_key_name`). The key itself is checked
before the body is read, outside the request's transaction (`dialer.web.guards`).

The transaction and the account are used with `scope="function"`: the transaction commits
(and runs its `models.on_commit` hooks) before the reply is sent, so a 2xx means the change
is committed and a failed commit is not answered with 2xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from campaigns.paging import DEFAULT_LIMIT, MAX_LIMIT
from dialer.errors import UnauthenticatedError
from dialer.logs import bind_context
from dialer.runtime import Runtime
from dialer.web.guards import CALLER, KeyHolder
from models import Account, transaction

_bearer = HTTPBearer(auto_error=False, description="An account's API key (`dialer keys create`).")


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


@dataclass(frozen=True)
class Caller:
    """Who made the request: the account, and the id and name of the API key it used."""

    account: Account
    key_name: str
    key_id: int


def _holder(request: Request) -> KeyHolder:
    holder: KeyHolder | None = request.scope.get("state", {}).get(CALLER)
    if holder is None:  # a keyed route outside `/v1`, which `Authenticate` guards
        raise UnauthenticatedError("unauthenticated", "send Authorization: Bearer <api key>")
    return holder


def current_caller(
    request: Request,
    session: SessionDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The account and key name of `Authorization: Bearer <api key>`, as
    `dialer.web.guards.Authenticate` checked it before the body was read (the bearer
    dependency documents the scheme); the key's name is also put on
    `request.state.api_key_name`.

    Raises:
        UnauthenticatedError: `unauthenticated` (no key was checked for the request).
    """
    holder = _holder(request)
    request.state.api_key_name = holder.key_name
    return Caller(session.get_one(Account, holder.account_id), holder.key_name, holder.key_id)


CurrentApiKey = Annotated[Caller, Depends(current_caller, scope="function")]


def current_account(caller: CurrentApiKey) -> Account:
    """The account of the request's API key (see `current_caller`)."""
    return caller.account


async def bound_account(
    account: Annotated[Account, Depends(current_account, scope="function")],
) -> Account:
    """The caller's account, bound to the request's log context (`account_id`). Async, so
    the binding is made in the request's own context, which the handler then runs in."""
    bind_context(account_id=account.id)
    return account


CurrentAccount = Annotated[Account, Depends(bound_account, scope="function")]


def current_actor(caller: CurrentApiKey) -> str:
    """Who a request acts as in the history (`models.CampaignEvent.actor`):
    `api-key:<key name>`."""
    return f"api-key:{caller.key_name}"


Actor = Annotated[str, Depends(current_actor, scope="function")]


def current_account_id(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> int:
    """The account id of the request's API key, with no transaction: for a handler that
    holds the request open (`POST /v1/calls` with `wait`) and must not hold a transaction
    open with it. Raises as `current_caller`."""
    return _holder(request).account_id


CurrentAccountId = Annotated[int, Depends(current_account_id)]


PageLimit = Annotated[
    int,
    Query(
        ge=1, le=MAX_LIMIT, description=f"Items per page (1-{MAX_LIMIT}, default {DEFAULT_LIMIT})."
    ),
]
PageCursor = Annotated[
    str | None,
    Query(
        max_length=1000, description="`next_cursor` of the previous page (400 `invalid_cursor`)."
    ),
]
"""The query parameters of every list: `limit` and the opaque `cursor` (`campaigns.paging`)."""


RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="An id (a PostgreSQL bigint).")]
"""A path id: out of a bigint's range it is 400 `invalid_request`, never a query."""
