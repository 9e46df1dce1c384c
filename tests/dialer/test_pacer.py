"""The pacer's dispatch round and lock, against real PostgreSQL and Redis."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import redis
from sqlalchemy import select

from campaigns.accounts import save_number
from dialer.dispatch.dialing import DialOrder
from dialer.dispatch.pacer import (
    PacerFencedError,
    PacerLock,
    dispatch_round,
    record_token,
    run_pacer,
)
from dialer.pool import Keys, ProviderKeys
from dialer.pool.reconcile import ensure_pool
from dialer.runtime import Runtime
from models import (
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignEvent,
    CampaignStatus,
    JobStatus,
    PacerFence,
    transaction,
)
from tests.factories import make_account, make_caller_id, make_campaign, make_job


def seed(
    url: str, campaigns: list[dict[str, Any]], account: dict[str, Any]
) -> tuple[int, list[int]]:
    with transaction(url) as session:
        acct = make_account(session, **account)
        ids = []
        for i, fields in enumerate(campaigns):
            jobs = fields.pop("jobs", 10)
            campaign = make_campaign(session, acct, status=CampaignStatus.RUNNING, **fields)
            for n in range(jobs):
                make_job(session, campaign, f"+1212555{i:02d}{n:02d}")
            ids.append(campaign.id)
        return acct.id, ids


def attempts_by_campaign(url: str) -> Counter[int]:
    with transaction(url) as session:
        return Counter(session.scalars(select(CallAttempt.campaign_id)))


def test_round_fills_the_account_pool_fairly(committed_db: str, runtime: Runtime) -> None:
    account_id, (a, b) = seed(
        committed_db,
        [{"max_concurrency": 5}, {"max_concurrency": 5}],
        {"max_concurrency": 4, "cps": 1e6},
    )
    ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    out = dispatch_round(runtime, account_id)
    assert len(out.dials) == 4
    assert attempts_by_campaign(committed_db) == Counter({a: 2, b: 2})
    assert runtime.pool.live(Keys(account_id).account_pool()) == 4
    # Full: the next round takes nothing.
    assert dispatch_round(runtime, account_id).dials == []
    with transaction(committed_db) as session:
        statuses = set(session.scalars(select(CallAttempt.status)))
    assert statuses == {AttemptStatus.DIALING}


def test_campaign_cap_and_priority(committed_db: str, runtime: Runtime) -> None:
    account_id, (bulk, reminders) = seed(
        committed_db,
        [{"max_concurrency": 10}, {"max_concurrency": 2, "priority": 10}],
        {"max_concurrency": 5, "cps": 1e6},
    )
    ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    dispatch_round(runtime, account_id)
    assert attempts_by_campaign(committed_db) == Counter({reminders: 2, bulk: 3})


def test_cps_limit_makes_the_round_wait(committed_db: str, runtime: Runtime) -> None:
    account_id, _ = seed(
        committed_db, [{"max_concurrency": 10}], {"max_concurrency": 10, "cps": 2.0}
    )
    ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    out = dispatch_round(runtime, account_id)
    assert len(out.dials) == 1
    # 2 calls/s (less the headroom) is one slot every ~0.52 s; the round may book 0.25 s ahead.
    assert 0.1 < out.wait_s <= 0.28
    assert out.work_left


def test_finished_campaign_completes(committed_db: str, runtime: Runtime) -> None:
    account_id, (campaign_id,) = seed(committed_db, [{"jobs": 0}], {})
    out = dispatch_round(runtime, account_id)
    assert not out.work_left
    with transaction(committed_db) as session:
        from models import Campaign

        assert session.get_one(Campaign, campaign_id).status is CampaignStatus.COMPLETED
        [event] = session.scalars(
            select(CampaignEvent).where(CampaignEvent.campaign_id == campaign_id)
        )
        assert (event.action, event.actor, event.to_status) == ("complete", "pacer", "completed")


def test_only_one_pacer_per_account(
    committed_db: str, redis_client: redis.Redis, runtime: Runtime
) -> None:
    account_id, _ = seed(committed_db, [{"jobs": 0}], {})
    first, second = PacerLock(runtime, account_id), PacerLock(runtime, account_id)
    assert first.acquire()
    assert not second.acquire()
    # The lock lapsed (a killed worker) and another pacer took it: the fence stops the first.
    redis_client.delete(Keys(account_id).pacer_lock())
    assert second.acquire()
    assert int(second.token) > int(first.token)
    assert not first.still_held()
    first.release()  # must not release the second pacer's lock
    assert second.still_held()
    assert run_pacer(runtime, account_id, lambda ids: None, budget_s=0.1).locked is False


def test_a_pacer_whose_lock_was_taken_over_admits_nothing(
    committed_db: str, redis_client: redis.Redis, runtime: Runtime
) -> None:
    """A pacer cut off past its lock's TTL wakes with a round to run: the admission script
    finds the lock holding another token and takes no lease; the round writes nothing."""
    account_id, _ = seed(committed_db, [{"jobs": 3}], {"max_concurrency": 3, "cps": 1e6})
    ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    old, new = PacerLock(runtime, account_id), PacerLock(runtime, account_id)
    assert old.acquire()
    redis_client.delete(Keys(account_id).pacer_lock())  # its TTL passed while it was cut off
    assert new.acquire()
    with pytest.raises(PacerFencedError):
        dispatch_round(runtime, account_id, old.fence)
    assert runtime.pool.live(Keys(account_id).account_pool()) == 0
    assert attempts_by_campaign(committed_db) == Counter()
    assert len(dispatch_round(runtime, account_id, new.fence).dials) == 3


def test_a_round_admitted_before_the_takeover_cannot_commit_after_it(
    committed_db: str, redis_client: redis.Redis, runtime: Runtime
) -> None:
    """The old pacer admitted while its lock held (Redis saw its token), then the new pacer
    took the lock and recorded its token in PostgreSQL before the old round's commit: the
    commit's compare-and-set refuses it, and the round is rolled back."""
    account_id, _ = seed(committed_db, [{"jobs": 3}], {"max_concurrency": 3, "cps": 1e6})
    ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    old = PacerLock(runtime, account_id)
    assert old.acquire()
    with transaction(committed_db) as session:  # as `PacerLock.acquire` of the new pacer
        assert record_token(session, account_id, int(old.token) + 1)
    with pytest.raises(PacerFencedError):
        dispatch_round(runtime, account_id, old.fence)
    assert attempts_by_campaign(committed_db) == Counter()
    with transaction(committed_db) as session:
        assert not record_token(session, account_id, int(old.token))
        assert set(session.scalars(select(CallJob.status))) == {JobStatus.PENDING}


def test_tokens_stay_above_every_recorded_one_after_redis_lost_its_counter(
    committed_db: str, redis_client: redis.Redis, runtime: Runtime
) -> None:
    account_id, _ = seed(committed_db, [{"jobs": 0}], {})
    first = PacerLock(runtime, account_id)
    assert first.acquire()
    first.release()
    redis_client.flushdb()  # the counter is gone: a failover lost it
    second = PacerLock(runtime, account_id)
    assert second.acquire()
    assert int(second.token) > int(first.token)
    with transaction(committed_db) as session:
        token = session.scalar(select(PacerFence.token).where(PacerFence.account_id == account_id))
    assert token == int(second.token)


def test_run_pacer_dispatches_and_enqueues(committed_db: str, runtime: Runtime) -> None:
    account_id, campaign_ids = seed(
        committed_db, [{"max_concurrency": 3, "jobs": 3}], {"max_concurrency": 3, "cps": 1e6}
    )
    sent: list[DialOrder] = []
    run = run_pacer(runtime, account_id, sent.extend, budget_s=0.5)
    assert run.locked and run.dispatched == 3 == len(sent)
    assert {(o.campaign_id, o.account_id) for o in sent} == {(campaign_ids[0], account_id)}
    with transaction(committed_db) as session:
        assert set(session.scalars(select(CallJob.status))) == {JobStatus.IN_PROGRESS}


def test_a_round_takes_no_lease_while_the_pool_is_lost(committed_db: str, runtime: Runtime) -> None:
    account_id, _ = seed(committed_db, [{"max_concurrency": 3}], {"max_concurrency": 3})
    # No generation key: Redis lost the pool (or was never seeded); nothing may be leased.
    out = dispatch_round(runtime, account_id)
    assert out.dials == [] and out.wait_s == 0.0
    assert attempts_by_campaign(committed_db) == Counter()
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is True
    assert len(dispatch_round(runtime, account_id).dials) == 3


def test_the_rebuilt_pool_holds_every_live_attempt(
    committed_db: str, redis_client: redis.Redis, runtime: Runtime
) -> None:
    account_id, (campaign_id,) = seed(
        committed_db, [{"max_concurrency": 3}], {"max_concurrency": 3}
    )
    ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    assert len(dispatch_round(runtime, account_id).dials) == 3
    redis_client.flushdb()  # a Redis restart without persistence
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is True
    assert runtime.pool.live(Keys(account_id).account_pool()) == 3
    assert runtime.pool.live(Keys(account_id).campaign_pool(campaign_id)) == 3
    assert dispatch_round(runtime, account_id).dials == []  # still full: the cap holds


def test_a_standing_campaign_stays_running_and_idle_when_it_has_nothing_to_dial(
    committed_db: str, runtime: Runtime
) -> None:
    """The standing campaign of single calls is not completed when its contacts are done,
    and does not keep the pacer (or beat) busy while it has nothing pending; an ordinary
    campaign with nothing left completes as before."""
    from dialer.dispatch.pacer import accounts_needing_pacer
    from models import Campaign

    account_id, (standing, ordinary) = seed(
        committed_db, [{"standing": True, "jobs": 0}, {"jobs": 0}], {"max_concurrency": 4}
    )
    ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    out = dispatch_round(runtime, account_id)
    assert out.dials == []
    assert out.work_left is False
    with transaction(committed_db) as session:
        assert session.get_one(Campaign, standing).status is CampaignStatus.RUNNING
        assert session.get_one(Campaign, ordinary).status is CampaignStatus.COMPLETED
    assert accounts_needing_pacer(runtime) == []

    with transaction(committed_db) as session:
        make_job(session, session.get_one(Campaign, standing), "+12125550143")
    assert accounts_needing_pacer(runtime) == [account_id]
    out = dispatch_round(runtime, account_id)
    assert len(out.dials) == 1
    assert out.work_left is True


def test_a_number_turned_off_for_outbound_is_no_longer_presented(
    committed_db: str, runtime: Runtime
) -> None:
    with transaction(committed_db) as session:
        account = make_account(session, max_concurrency=10, cps=1e6)
        disabled = make_caller_id(session, account, "+14155550101")
        kept = make_campaign(session, account, status=CampaignStatus.RUNNING)
        stopped = make_campaign(session, account, status=CampaignStatus.RUNNING, caller_id=disabled)
        for n in range(3):
            make_job(session, kept, f"+121255501{n:02d}")
            make_job(session, stopped, f"+121255502{n:02d}")
        account_id, stopped_id = account.id, stopped.id
    with transaction(committed_db) as session:
        save_number(
            session,
            account_id,
            "+14155550101",
            outbound=False,
            provider=runtime.provider,
            actor="test",
        )
    ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    assert len(dispatch_round(runtime, account_id).dials) == 3
    with transaction(committed_db) as session:
        assert set(session.scalars(select(CallAttempt.from_e164))) == {"+15005550006"}
        campaign = session.get_one(Campaign, stopped_id)
        assert campaign.status is CampaignStatus.PAUSED
        assert campaign.status_reason == "caller ID +14155550101 was disabled for outbound calls"


def test_accounts_together_stay_within_the_provider_accounts_cap(
    committed_db: str, runtime: Runtime
) -> None:
    runtime.settings.provider_max_concurrency = 3
    account_a, _ = seed(committed_db, [{"jobs": 2}], {"name": "a", "max_concurrency": 10})
    account_b, _ = seed(committed_db, [{"jobs": 5}], {"name": "b", "max_concurrency": 10})
    for account_id in (account_a, account_b):
        ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    assert len(dispatch_round(runtime, account_a).dials) == 2
    assert len(dispatch_round(runtime, account_b).dials) == 1  # the provider's third slot
    assert dispatch_round(runtime, account_b).dials == []
    assert runtime.pool.live(ProviderKeys().pool()) == 3
    # The next lease any account frees wakes b's pacer.
    assert runtime.redis.smembers(ProviderKeys().waiters()) == {Keys(account_b).wake().encode()}
