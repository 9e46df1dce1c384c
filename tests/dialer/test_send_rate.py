"""The CPS limit as the carrier counts it: however late create requests reach the carrier
after their send slot was granted, no one-second window there holds more than the limit."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dialer.dispatch.dialing import PlaceResult, place_call
from dialer.runtime import Runtime
from dialer.simulator import SimulatorConfig, run_in_thread
from models import CampaignStatus, JobStatus, transaction
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.servers import serve_app

CPS = 10
CALLS = 45
MAX_DELAY_S = 0.3
"""Longest a create request is held between the worker and the carrier (a busy worker,
the network): more than the gap between two calls at the limit."""


def delaying_proxy(target: str, seed: int) -> Starlette:
    """An app that forwards every request to `target`, each after a random delay of up to
    `MAX_DELAY_S` (seeded): requests granted in order reach the carrier bunched."""
    rng = random.Random(seed)
    lock = threading.Lock()

    async def forward(request: Request) -> Response:
        with lock:
            delay = rng.uniform(0, MAX_DELAY_S)
        await asyncio.sleep(delay)
        headers = {k: v for k, v in request.headers.items() if k != "host"}
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.request(
                request.method,
                f"{target}{request.url.path}",
                params=request.url.query,
                headers=headers,
                content=await request.body(),
            )
        dropped = ("content-length", "content-encoding", "transfer-encoding")
        kept = {k: v for k, v in reply.headers.items() if k not in dropped}
        return Response(reply.content, reply.status_code, headers=kept)

    methods = ["GET", "POST", "PUT", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with run_in_thread(SimulatorConfig(time_scale=0.001, seed=11)) as url:
        yield url


@pytest.fixture(scope="module")
def proxy_url(sim_url: str) -> Iterator[str]:
    with serve_app(delaying_proxy(sim_url, seed=5)) as url:
        yield url


@pytest.fixture
def runtime_settings(proxy_url: str) -> dict[str, Any]:
    return {
        "twilio_base_url": proxy_url,
        "twilio_timeout_s": 5.0,
        "send_wait_s": 30.0,  # every attempt waits for its slot: none is given back
        "public_base_url": "http://127.0.0.1:9",  # callbacks go nowhere in this test
    }


def test_late_requests_never_put_more_than_the_limit_in_a_second_at_the_carrier(
    runtime: Runtime, sim_url: str
) -> None:
    httpx.post(f"{sim_url}/_sim/reset", timeout=5).raise_for_status()
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session, max_concurrency=CALLS, cps=float(CPS))
        campaign = make_campaign(session, account, status=CampaignStatus.RUNNING)
        attempt_ids = [
            make_attempt(
                session,
                make_job(
                    session, campaign, f"+1212555{n:04d}", status=JobStatus.IN_PROGRESS,
                    attempt_count=1,
                ),
            ).id
            for n in range(CALLS)
        ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=8) as workers:
        results = list(workers.map(partial(place_call, runtime), attempt_ids, timeout=120))
    assert results == [PlaceResult.PLACED] * CALLS
    stats = httpx.get(f"{sim_url}/_sim/stats", timeout=5).json()
    assert stats["calls_created"] == CALLS
    assert stats["max_cps"] <= CPS
    # Not throttled to the requests' whole hold: the slot of an answered request lapses
    # one second after its answer (about 8 calls/s here, with requests up to 0.3 s late).
    creates = httpx.get(f"{sim_url}/_sim/timeline", timeout=5).json()["creates"]
    assert (len(creates) - 1) / (creates[-1] - creates[0]) >= 0.5 * CPS
