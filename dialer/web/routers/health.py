"""Liveness, and Prometheus metrics for the operator's scraper only.

`/metrics` names every tenant's ids, caps and live calls, so it is served only when the
operator sets `METRICS_TOKEN` (`metrics_router`, mounted by `create_app`), and then only to
a request that sends it as its bearer token; otherwise the route does not exist (404).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dialer.errors import UnauthenticatedError
from dialer.metrics import CONTENT_TYPE_LATEST, exposition
from dialer.pool.gauges import PoolCollector
from dialer.web.deps import RuntimeDep
from dialer.web.errors import ANY_OTHER
from dialer.web.schemas import HealthOut

router = APIRouter(tags=["health"], responses=ANY_OTHER)
metrics_router = APIRouter(tags=["health"], include_in_schema=False)
_scraper = HTTPBearer(auto_error=False)


@router.get("/healthz")
def healthz() -> HealthOut:
    """The process serves (it does not check PostgreSQL or Redis)."""
    return HealthOut(status="ok")


@metrics_router.get("/metrics", response_class=Response)
def metrics(
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scraper)],
) -> Response:
    """Prometheus metrics of every process of this API server (all its uvicorn workers,
    `dialer.metrics`), and the pool's leases and caps per scope read at scrape time
    (`dialer.pool.gauges`), for `Authorization: Bearer <METRICS_TOKEN>`.

    Raises:
        UnauthenticatedError: `unauthenticated` (401), no bearer token or not the one set.
    """
    token = rt.settings.metrics_token
    given = credentials.credentials if credentials is not None else ""
    if token is None or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise UnauthenticatedError("unauthenticated", "send Authorization: Bearer <METRICS_TOKEN>")
    pool = PoolCollector(rt.redis, rt.settings.database_url)
    return Response(exposition(pool), media_type=CONTENT_TYPE_LATEST)
