"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from dialer.metrics import CONTENT_TYPE_LATEST, exposition
from dialer.pool.gauges import PoolCollector
from dialer.web.deps import RuntimeDep
from dialer.web.errors import ANY_OTHER
from dialer.web.schemas import HealthOut

router = APIRouter(tags=["health"], responses=ANY_OTHER)


@router.get("/healthz")
def healthz() -> HealthOut:
    """The process serves (it does not check PostgreSQL or Redis)."""
    return HealthOut(status="ok")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
def metrics(rt: RuntimeDep) -> Response:
    """Prometheus metrics of every process of this API server (all its uvicorn workers,
    `dialer.metrics`), and the pool's leases and caps per scope read at scrape time
    (`dialer.pool.gauges`)."""
    pool = PoolCollector(rt.redis, rt.settings.database_url)
    return Response(exposition(pool), media_type=CONTENT_TYPE_LATEST)
