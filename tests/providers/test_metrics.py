"""The Twilio adapter counts every create by result and every provider error by operation,
kind and code (`dialer.metrics`), against the simulator."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from dialer.providers.base import NotFoundProviderError, ProviderError
from tests.providers.conftest import make_provider
from tests.providers.test_twilio_adapter import call_to
from tests.simulator.support import Sim, run_sim


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_created_call_and_an_unknown_sid_are_counted(sim: Sim) -> None:
    provider = make_provider(sim.base_url)
    created = sample("dialer_provider_creates_total", result="created")
    not_found = sample(
        "dialer_provider_errors_total", operation="fetch", kind="not_found", code="20404"
    )
    provider.create_call(call_to("+15551230001"))
    with pytest.raises(NotFoundProviderError):
        provider.fetch_call("CA" + "f" * 32)
    assert sample("dialer_provider_creates_total", result="created") == created + 1
    assert (
        sample("dialer_provider_errors_total", operation="fetch", kind="not_found", code="20404")
        == not_found + 1
    )


@pytest.mark.parametrize(
    ("fault", "result", "code"),
    [("429", "throttled", "20429"), ("502-before", "ambiguous", "20500")],
)
def test_a_refused_create_is_counted_by_result_and_code(fault: str, result: str, code: str) -> None:
    before = (
        sample("dialer_provider_creates_total", result=result),
        sample("dialer_provider_errors_total", operation="create", kind=result, code=code),
    )
    with run_sim(faults={fault: 1.0}) as sim, pytest.raises(ProviderError):
        make_provider(sim.base_url).create_call(call_to("+15551230001"))
    after = (
        sample("dialer_provider_creates_total", result=result),
        sample("dialer_provider_errors_total", operation="create", kind=result, code=code),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
