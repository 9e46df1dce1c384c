"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
def metrics() -> Response:
    """This process's Prometheus metrics (the provider callbacks' counts and times)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
