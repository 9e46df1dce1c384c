"""`PoolCollector`: leases in use (unexpired, from Redis) and caps (from PostgreSQL) of every
running campaign's scopes and of any campaign with a live attempt."""

from __future__ import annotations

from typing import Any

import redis
from prometheus_client import CollectorRegistry

from dialer.pool import Keys
from dialer.pool.gauges import PoolCollector
from dialer.runtime import Runtime
from models import CallerId, CampaignStatus, transaction
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.support import hold_lease


def gauges(runtime: Runtime) -> dict[tuple[str, str, str, str], float]:
    registry = CollectorRegistry()
    registry.register(PoolCollector(runtime.redis, runtime.settings.database_url))
    return {
        (s.name, s.labels["scope"], s.labels["id"], s.labels["account_id"]): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_leases_and_caps_per_scope(runtime: Runtime) -> None:
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session, max_concurrency=9)
        running = make_campaign(session, account, status=CampaignStatus.RUNNING, max_concurrency=4)
        paused = make_campaign(session, account, status=CampaignStatus.PAUSED, max_concurrency=2)
        caller_id = session.get_one(CallerId, running.caller_id_id)
        caller_id.max_concurrency = 5
        attempts = [
            make_attempt(session, make_job(session, campaign, phone)).id
            for campaign, phone in (
                (running, "+12125550141"),
                (running, "+12125550142"),
                (paused, "+12125550143"),
            )
        ]
        ids = account.id, running.id, paused.id, caller_id.id
    account_id, running_id, paused_id, caller_id_id = ids
    a = str(account_id)
    # Nothing held yet: the running campaign's scopes with their caps, and the paused one,
    # which has a live attempt in PostgreSQL.
    assert gauges(runtime) == {
        ("dialer_pool_leases", "account", a, a): 0,
        ("dialer_pool_leases", "campaign", str(running_id), a): 0,
        ("dialer_pool_leases", "campaign", str(paused_id), a): 0,
        ("dialer_pool_leases", "caller_id", str(caller_id_id), a): 0,
        ("dialer_pool_cap", "account", a, a): 9,
        ("dialer_pool_cap", "campaign", str(running_id), a): 4,
        ("dialer_pool_cap", "campaign", str(paused_id), a): 2,
        ("dialer_pool_cap", "caller_id", str(caller_id_id), a): 5,
    }
    for attempt_id in attempts:
        hold_lease(runtime, attempt_id)
    # An expired lease is not in use (acquire.lua purges it on the next acquire).
    runtime.redis.zadd(Keys(account_id).account_pool(), {"999": 1})
    seen = gauges(runtime)
    assert seen[("dialer_pool_leases", "account", a, a)] == 3
    assert seen[("dialer_pool_leases", "campaign", str(running_id), a)] == 2
    assert seen[("dialer_pool_leases", "caller_id", str(caller_id_id), a)] == 3
    # The paused campaign still holds a live call: shown, with its cap.
    assert seen[("dialer_pool_leases", "campaign", str(paused_id), a)] == 1
    assert seen[("dialer_pool_cap", "campaign", str(paused_id), a)] == 2


class CommandLog(redis.Redis):
    """A real Redis client that notes the name of every command it sends."""

    commands: list[str]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]).upper())
        return super().execute_command(*args, **options)


def test_a_scrape_does_not_scan_redis(runtime: Runtime) -> None:
    """The scopes come from PostgreSQL (running campaigns, live attempts): a scrape's cost
    does not grow with every key of every tenant in Redis."""
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session)
        paused = make_campaign(session, account, status=CampaignStatus.PAUSED)
        attempt_id = make_attempt(session, make_job(session, paused, "+12125550143")).id
        ids = account.id, paused.id
    hold_lease(runtime, attempt_id)
    client = CommandLog.from_url(runtime.settings.redis_url)
    client.commands = []
    registry = CollectorRegistry()
    registry.register(PoolCollector(client, runtime.settings.database_url))
    seen = {
        (s.name, s.labels["scope"], s.labels["id"]): s.value
        for family in registry.collect()
        for s in family.samples
    }
    assert seen[("dialer_pool_leases", "campaign", str(ids[1]))] == 1
    assert seen[("dialer_pool_leases", "account", str(ids[0]))] == 1
    assert "SCAN" not in client.commands
