"""Every tenant shares one provider account: together they stay within what the provider
granted it (`PROVIDER_MAX_CONCURRENCY`, `PROVIDER_MAX_CPS`), as the carrier counts."""

from __future__ import annotations

from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_clean_end, start_campaign, wait_finished

PROVIDER_MAX_CONCURRENCY = 4
PROVIDER_MAX_CPS = 3


def test_two_accounts_dialling_at_once_stay_within_the_provider_accounts_limits(
    stack: Stack,
) -> None:
    # Calls of about 1.4 s (ring 6 s + talk 40 s, simulated): each account alone would keep
    # 10 live and create up to 50 a second.
    stack.sim("POST", "/_sim/config", json={"time_scale": 0.03})
    stack.env["PROVIDER_MAX_CONCURRENCY"] = str(PROVIDER_MAX_CONCURRENCY)
    stack.env["PROVIDER_MAX_CPS"] = str(PROVIDER_MAX_CPS)
    stack.start_worker(concurrency=4)
    campaigns = [
        start_campaign(stack, 15, account=name, first_contact=first, max_attempts=1)
        for name, first in [("tenant-a", 0), ("tenant-b", 100)]
    ]
    for account_id, campaign_id in campaigns:
        final = wait_finished(stack, account_id, campaign_id, timeout_s=120)
        assert final["status"] == "completed"
        assert final["attempts"]["calls_placed"] == 15
    stats = assert_clean_end(stack, *campaigns[-1], max_attempts=1)
    assert stats["calls_created"] == 30
    assert 0 < stats["max_concurrent"] <= PROVIDER_MAX_CONCURRENCY
    assert 0 < stats["max_cps"] <= PROVIDER_MAX_CPS
