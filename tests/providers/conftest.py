"""Fixtures for the provider tests: the contract (Twilio's OpenAPI spec) and a simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_core import OpenAPI

from dialer.providers.twilio import TwilioProvider
from tests.simulator.support import ACCOUNT_SID, AUTH_TOKEN, Sim, run_sim

SPEC_PATH = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "contracts"
    / "twilio"
    / "twilio_api_v2010.json"
)


@pytest.fixture(scope="session")
def twilio_openapi() -> OpenAPI:
    """Twilio's published API v2010 spec (its file-path loader fails on it: load the dict)."""
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec: dict[str, Any] = json.load(handle)
    return OpenAPI.from_dict(spec)


@pytest.fixture
def sim() -> Iterator[Sim]:
    with run_sim(time_scale=0.001) as running:
        yield running


def make_provider(base_url: str, timeout_s: float = 2.0, token: str = AUTH_TOKEN) -> TwilioProvider:
    return TwilioProvider(ACCOUNT_SID, token, base_url, timeout_s)
