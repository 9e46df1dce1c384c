"""The pool as Prometheus gauges, read at scrape time: leases in use and the cap of every
scope (account, campaign, caller ID).

Scopes are those of running campaigns (shown even with no lease) and of campaigns with a
live attempt (a paused campaign's calls still live), both from PostgreSQL, the record of
which calls are live (the partial index of live attempts): no `SCAN` of Redis per scrape.
A lease Redis holds for no live attempt (leaked) is the reaper's to release. Leases in
use count only unexpired ones (score after Redis `TIME`), as `acquire.lua` does; caps come
from PostgreSQL (accounts, campaigns and caller IDs), a caller ID without a cap is left
out of `dialer_pool_cap`. Served by the API's `/metrics` only: the pool is one shared
state, so one kind of process reports it.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
import sqlalchemy.exc
import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import select

from dialer.pool import Keys
from models import (
    TERMINAL_ATTEMPT_STATUSES,
    Account,
    CallAttempt,
    CallerId,
    Campaign,
    CampaignStatus,
    transaction,
)

log = structlog.get_logger(__name__)

Scope = tuple[str, int, int]
"""(kind: account | campaign | caller_id, id, account id)"""


class PoolCollector:
    """A prometheus-client collector: `dialer_pool_leases` and `dialer_pool_cap`, labelled
    `scope` (account, campaign, caller_id), `id` and `account_id`.

    A scrape costs one query for the scopes, one per kind of scope for the caps, and one
    pipelined `ZCOUNT` per scope (no `SCAN`). Redis or PostgreSQL unreachable: the
    families are sent empty (and a warning logged), so the rest of the scrape still
    answers.
    """

    def __init__(self, client: redis.Redis, database_url: str) -> None:
        self.redis = client
        self.database_url = database_url

    def collect(self) -> Iterator[Metric]:
        leases = GaugeMetricFamily(
            "dialer_pool_leases",
            "Leases in use (live calls) per pool scope, from Redis at scrape time",
            labels=["scope", "id", "account_id"],
        )
        caps = GaugeMetricFamily(
            "dialer_pool_cap",
            "Concurrency cap per pool scope (live calls), from PostgreSQL at scrape time",
            labels=["scope", "id", "account_id"],
        )
        try:
            in_use, cap = self._read()
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as error:
            log.warning("pool_gauges_unavailable", error=str(error))
            in_use, cap = {}, {}
        for scope, count in sorted(in_use.items()):
            leases.add_metric([scope[0], str(scope[1]), str(scope[2])], count)
        for scope, value in sorted(cap.items()):
            caps.add_metric([scope[0], str(scope[1]), str(scope[2])], value)
        yield leases
        yield caps

    def _read(self) -> tuple[dict[Scope, int], dict[Scope, int]]:
        scopes: set[Scope] = set()
        cap: dict[Scope, int] = {}
        with transaction(self.database_url) as session:
            # `NOT IN` the terminal statuses: the predicate of `ix_call_attempts_live`.
            live = select(CallAttempt.campaign_id).where(
                CallAttempt.status.not_in(TERMINAL_ATTEMPT_STATUSES)
            )
            shown = session.execute(
                select(
                    Campaign.id,
                    Campaign.account_id,
                    Campaign.caller_id_id,
                    Campaign.pool_caller_ids,
                ).where((Campaign.status == CampaignStatus.RUNNING) | Campaign.id.in_(live))
            )
            for campaign_id, account_id, caller_id_id, pool in shown:
                scopes.add(("account", account_id, account_id))
                scopes.add(("campaign", campaign_id, account_id))
                for number in (caller_id_id, *pool):
                    scopes.add(("caller_id", number, account_id))
            wanted = {kind: {s[1] for s in scopes if s[0] == kind} for kind in _KINDS}
            queries = {
                "account": select(Account.id, Account.id, Account.max_concurrency).where(
                    Account.id.in_(wanted["account"])
                ),
                "campaign": select(
                    Campaign.id, Campaign.account_id, Campaign.max_concurrency
                ).where(Campaign.id.in_(wanted["campaign"])),
                "caller_id": select(
                    CallerId.id, CallerId.account_id, CallerId.max_concurrency
                ).where(CallerId.id.in_(wanted["caller_id"])),
            }
            numbers = dict(
                session.execute(
                    select(CallerId.id, CallerId.e164).where(CallerId.id.in_(wanted["caller_id"]))
                ).all()
            )
            for kind, query in queries.items():
                if wanted[kind]:
                    for scope_id, account_id, value in session.execute(query):
                        if value is not None:
                            cap[(kind, scope_id, account_id)] = value
        now_s, now_us = self.redis.time()
        now_ms = now_s * 1000 + now_us // 1000
        pipe = self.redis.pipeline(transaction=False)
        # A number removed since the campaigns were read has no key.
        ordered = sorted(s for s in scopes if s[0] != "caller_id" or s[1] in numbers)
        for scope in ordered:
            pipe.zcount(_key(scope, numbers), f"({now_ms}", "+inf")
        in_use = dict(zip(ordered, (int(n) for n in pipe.execute()), strict=True))
        # A caller ID without a cap: shown only while it holds leases.
        in_use = {s: n for s, n in in_use.items() if s[0] != "caller_id" or s in cap or n}
        return in_use, cap


_KINDS = ("account", "campaign", "caller_id")


def _key(scope: Scope, numbers: dict[int, str]) -> str:
    """The scope's Redis key; a caller ID's is named by its number (`numbers`: id -> E.164)."""
    kind, scope_id, account_id = scope
    keys = Keys(account_id)
    if kind == "account":
        return keys.account_pool()
    if kind == "campaign":
        return keys.campaign_pool(scope_id)
    return keys.caller_id_pool(numbers[scope_id])
