"""Failover of the parts a dialer is built from, each caused for real on a running campaign
of one attempt per contact, the invariants read at the carrier (the simulator's stats and
create timeline), never from the dialer's own view:

- the Redis master SIGKILLed and a replica promoted by Sentinel (Redis and RabbitMQ brokers);
- the RabbitMQ node restarted (`rabbitmqctl stop`, then started again);
- PostgreSQL restarted (fast shutdown: every session cut), on both brokers.

Invariants: calls live at once never above the account's cap, no number rung twice, never
more creates than the CPS in any one-second window, every contact ends, and calls are
placed after the fault. Each run records the calls placed before and after the fault and
the time from the fault to the first create after it (`record_property`, and printed).

Every server failed here is the test's own (`failover_support`): the machine's shared
PostgreSQL, Redis and RabbitMQ are never stopped.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from campaigns import lifecycle
from campaigns.reports import campaign_report
from dialer.cli.demo import generated_contacts
from dialer.cli.devstack import LocalStack, local_stack
from dialer.runtime import Runtime
from dialer.settings import Settings
from models import Campaign, transaction
from models.migrate import upgrade
from tests.conftest import REDIS_URL
from tests.distributed.failover_support import (
    MASTER_NAME,
    pg_cluster,
    rabbit_node,
    redis_group,
    wait_for,
)
from tests.factories import account_named

CONTACTS = 60
CAP = 4
"""The account's live-call cap (and the campaign's)."""
CPS = 4
"""The account's calls per second: 60 contacts take at least 15 s."""
FAULT_AFTER_CALLS = 15
"""The fault strikes once the carrier has created this many calls."""
FINISH_TIMEOUT_S = 180.0

ENV = {
    "TWILIO_TIMEOUT_S": "2",
    "STUCK_DIALING_AFTER_S": "3",
    "AMBIGUOUS_REDIAL_AFTER_S": "8",
    "STATUS_POLL_AFTER_S": "3",
}
"""The tests' recovery waits (as `tests/e2e`): lost dials and callbacks noticed in seconds."""


@dataclass
class Figures:
    """What one faulted run measured at the carrier."""

    scenario: str
    calls_before: int
    calls_after: int
    outage_s: float
    """How long the faulted part was away (for Sentinel: until a replica was promoted)."""
    calls_during: int
    """Creates while the part was away (dials already in a worker's hands, or sent through
    the parts still up)."""
    resume_s: float
    """From the part back to the carrier's first create after that."""
    longest_gap_s: float
    """The longest time without a create from the fault to the last create."""
    max_concurrent: int
    max_cps: int
    max_dials_per_number: int
    finished_s: float


def _sim(stack: LocalStack, path: str) -> Any:
    response = httpx.get(stack.sim_url + path, timeout=10)
    response.raise_for_status()
    return response.json()


def _start_campaign(stack: LocalStack, runtime: Runtime) -> tuple[int, int]:
    url = runtime.settings.database_url
    with transaction(url) as session:
        account_id = account_named(session, "failover", max_concurrency=CAP, cps=CPS).id
    imported = lifecycle.import_campaign(
        url,
        runtime.settings.data_dir,
        account_id,
        lifecycle.CampaignOptions(
            name="failover", message="Hello {first_name}.", max_concurrency=CAP, max_attempts=1
        ),
        io.BytesIO(generated_contacts(CONTACTS)),
    )
    with transaction(url) as session:
        # One attempt per contact: no retry of any outcome.
        no_retry = {"retry": False, "delay_s": 60}
        session.execute(
            update(Campaign)
            .where(Campaign.id == imported.campaign_id)
            .values(retry_policy={k: no_retry for k in ("busy", "no-answer", "failed", "machine")})
        )
        lifecycle.start(session, account_id, imported.campaign_id, actor="test")
    stack.kick_pacer(account_id)
    return account_id, imported.campaign_id


def _report(runtime: Runtime, account_id: int, campaign_id: int) -> dict[str, Any]:
    with transaction(runtime.settings.database_url) as session:
        return campaign_report(session, runtime.pool, account_id, campaign_id).model_dump(
            mode="json"
        )


def run_through_fault(
    scenario: str,
    settings: Settings,
    run_dir: Path,
    env: dict[str, str],
    fault: Callable[[], float],
    record_property: Callable[[str, object], None],
) -> Figures:
    """Run a campaign on a local stack (simulator, API, one worker, beat) configured by
    `settings` and `env`; call `fault` (it returns the seconds the part was away) once the
    carrier created `FAULT_AFTER_CALLS` calls; wait for every contact to end; check the
    invariants at the carrier; return the figures."""
    runtime = Runtime(settings)
    with local_stack(
        settings, run_dir, time_scale=0.005, worker_concurrency=4, extra_env={**ENV, **env}
    ) as stack:
        started = time.monotonic()
        account_id, campaign_id = _start_campaign(stack, runtime)
        wait_for(
            lambda: _sim(stack, "/_sim/stats")["calls_created"] >= FAULT_AFTER_CALLS,
            60,
            f"{FAULT_AFTER_CALLS} calls before the fault",
        )
        fault_at = time.monotonic()
        outage_s = fault()
        wait_for(
            lambda: _report(runtime, account_id, campaign_id)["finished"],
            FINISH_TIMEOUT_S,
            "every contact to end after the fault",
        )
        finished_s = time.monotonic() - started
        stats = _sim(stack, "/_sim/stats")
        creates = _sim(stack, "/_sim/timeline")["creates"]
        final = _report(runtime, account_id, campaign_id)
    after = sorted(t for t in creates if t > fault_at)
    back_at = fault_at + outage_s
    resumed = [t for t in after if t > back_at]
    marks = [fault_at, *after]
    figures = Figures(
        scenario=scenario,
        calls_before=len(creates) - len(after),
        calls_after=len(after),
        outage_s=round(outage_s, 2),
        calls_during=len(after) - len(resumed),
        resume_s=round(resumed[0] - back_at, 2) if resumed else float("inf"),
        longest_gap_s=round(max(b - a for a, b in pairwise(marks)), 2) if after else float("inf"),
        max_concurrent=stats["max_concurrent"],
        max_cps=stats["max_cps"],
        max_dials_per_number=stats["max_dials_per_number"],
        finished_s=round(finished_s, 1),
    )
    record_property("figures", json.dumps(asdict(figures)))
    print(f"\nfailover figures: {json.dumps(asdict(figures))}")  # the closing note's figures
    contacts = final["contacts"]
    assert contacts["pending"] == contacts["dialing"] == contacts["live"] == 0
    assert contacts["scheduled_retry"] == contacts["waiting_for_window"] == 0
    assert final["attempts"]["calls_placed"] == stats["calls_created"]
    assert figures.calls_after > figures.calls_during, "no call was placed after the fault"
    assert figures.calls_before + figures.calls_after == stats["calls_created"]
    assert stats["max_dials_per_number"] <= 1
    assert stats["numbers_dialed"] == stats["calls_created"]
    assert 0 < stats["max_concurrent"] <= CAP
    assert 0 < stats["max_cps"] <= CPS
    return figures


@contextmanager
def broker_for(kind: str) -> Iterator[dict[str, str]]:
    """`CELERY_BROKER_URL` for `kind`: a RabbitMQ node of the test's own, or nothing (the
    Redis of `REDIS_URL` / the Sentinels)."""
    with ExitStack() as stack:
        if kind == "rabbitmq":
            node = stack.enter_context(rabbit_node())
            yield {"celery_broker_url": node.url}
        else:
            yield {}


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_redis_master_killed_and_a_replica_promoted(
    broker: str,
    tmp_path: Path,
    committed_db: str,
    record_property: Callable[[str, object], None],
) -> None:
    with redis_group(tmp_path / "redis") as group, broker_for(broker) as broker_setting:
        settings = Settings(
            database_url=committed_db,
            redis_url="redis://127.0.0.1:1/3",  # db 3 of the master the Sentinels name
            redis_sentinels=group.sentinel_addresses,
            redis_sentinel_master=MASTER_NAME,
            data_dir=tmp_path,
            **broker_setting,
        )
        env = {"REDIS_SENTINELS": group.sentinel_addresses, "REDIS_SENTINEL_MASTER": MASTER_NAME}

        def kill_master() -> float:
            return group.wait_promoted(group.kill_master())

        run_through_fault(
            f"redis-sentinel/{broker}",
            settings,
            tmp_path / "run",
            env,
            kill_master,
            record_property,
        )


def test_rabbitmq_node_restarted(
    tmp_path: Path,
    committed_db: str,
    redis_client: Any,
    record_property: Callable[[str, object], None],
) -> None:
    with rabbit_node() as node:
        settings = Settings(
            database_url=committed_db,
            redis_url=REDIS_URL,
            celery_broker_url=node.url,
            data_dir=tmp_path,
        )
        run_through_fault(
            "rabbitmq-restart", settings, tmp_path / "run", {}, node.restart, record_property
        )


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_postgresql_restarted(
    broker: str,
    tmp_path: Path,
    redis_client: Any,
    record_property: Callable[[str, object], None],
) -> None:
    with pg_cluster() as cluster, broker_for(broker) as broker_setting:
        upgrade(cluster.url)
        settings = Settings(
            database_url=cluster.url, redis_url=REDIS_URL, data_dir=tmp_path, **broker_setting
        )
        run_through_fault(
            f"postgresql-restart/{broker}",
            settings,
            tmp_path / "run",
            {},
            cluster.restart,
            record_property,
        )
