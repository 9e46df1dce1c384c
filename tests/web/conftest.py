"""The served API for the web tests: two accounts ("acme", "other"), each with a key and
the simulator's magic caller ID, a carrier simulator that owns a few numbers, and uvicorn
over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from campaigns.accounts import create_account
from dialer.runtime import Runtime
from dialer.web.app import create_app
from models import transaction
from tests.factories import make_api_key
from tests.servers import serve_app
from tests.simulator.support import Sim, run_sim
from tests.web.support import KEY, OTHER_KEY, Api

OWNED = ["+15005550006", "+14155550101", "+14155550102"]
"""Numbers the simulator's account owns; +14155550103 is verified as a caller ID."""
VERIFIED = ["+14155550103"]


@pytest.fixture(scope="session")
def sim() -> Iterator[Sim]:
    with run_sim(time_scale=0.001, owned_numbers=OWNED, verified_caller_ids=VERIFIED) as running:
        yield running


@pytest.fixture
def runtime_settings(sim: Sim) -> dict[str, Any]:
    return {"twilio_base_url": sim.base_url, "webhook_allow_private_networks": True}


@pytest.fixture
def api(runtime: Runtime) -> Iterator[Api]:
    with transaction(runtime.settings.database_url) as session:
        acme = create_account(session, "acme", simulator=True)
        make_api_key(session, acme, KEY)
        other = create_account(session, "other", simulator=True)
        make_api_key(session, other, OTHER_KEY)
        ids = acme.id, other.id
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield Api(http, runtime, *ids)
