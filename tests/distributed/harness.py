"""The fault harness of the distributed tests: a campaign on three hosts (`dialer.cli.chaos`),
a fault in its middle, and the promises read at the carrier and at the webhook receiver.

`running_cluster` starts the simulator and three hosts (host1: API, worker, beat; host2:
worker, beat; host3: worker) on the tests' databases, with the recovery waits on the tests'
scale, and a webhook receiver (`tests.receiver`) the account's events go to. A scenario
starts a campaign (`Cluster.start_campaign`, one attempt per contact), waits for calls to
flow, applies its fault (`Cluster.partition`), and ends with `Cluster.finish`, which waits
for every contact to end and checks every promise:

- at the carrier (`GET /_sim/stats`): live calls never above the account's cap, never
  more creates in a second than its CPS limit, no number dialled twice, no call live at
  the end;
- every contact ended (the report, and one `contact.completed` event per contact);
- at the receiver: every event the outbox holds delivered at least once, under one id
  (a redelivery carries the same id and the same body).

Every wait is bounded in time; figures (calls before, during and after the fault, time to
recover) are returned for the report.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from campaigns import lifecycle
from campaigns.reports import campaign_report
from dialer.cli.chaos import CarrierWitness, ChaosStack, Figures, Host, chaos_stack
from dialer.cli.demo import generated_contacts
from dialer.pool import Keys
from dialer.runtime import Runtime
from dialer.settings import Settings
from models import Campaign, WebhookEvent, transaction
from tests.conftest import _INDEX, DATABASE_URL, REDIS_URL
from tests.factories import account_named
from tests.receiver import Receiver
from tests.servers import serve_app
from tests.support import wait_until

TIME_SCALE = 0.02
"""Simulated seconds per real second: a 100 s call lasts 2 s."""
HOST_ENV = {
    "TWILIO_TIMEOUT_S": "2",
    "STUCK_DIALING_AFTER_S": "3",
    "AMBIGUOUS_REDIAL_AFTER_S": "8",
    "STATUS_POLL_AFTER_S": "3",
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",  # the receiver is on loopback
}
"""The hosts' recovery waits on the tests' scale (as `tests/e2e`)."""
NO_RETRIES = {
    outcome: {"retry": False, "delay_s": 60.0}
    for outcome in ("busy", "no-answer", "failed", "machine")
}


@dataclass
class FaultReport:
    """What one fault did, as the carrier saw it. Seconds are real seconds."""

    before: int
    """Calls the carrier had created when the fault began."""
    during: int
    """Calls created while the fault lasted."""
    after: int
    """Calls created after it was healed (set by `Cluster.finish`)."""
    fault_s: float
    ended_during: int
    """Contacts that ended while the fault lasted (by the dialer's report)."""
    recover_s: float
    """From the heal to the first call created after it (0: none was left to create)."""
    stall_s: float
    """The longest time without a call created from the fault's start to the heal's first
    call: how long the fault stopped dialling."""
    figures: Figures | None = None
    """The carrier's figures at the end."""

    def line(self) -> str:
        figures = self.figures
        seen = (
            f"; max live {figures.max_concurrent}, max creates/s {figures.max_cps}, "
            f"max dials of one number {figures.max_dials_per_number}"
            if figures
            else ""
        )
        return (
            f"calls before {self.before}, during {self.during}, after {self.after}; "
            f"contacts ended during {self.ended_during}; "
            f"fault {self.fault_s:.1f} s, stall {self.stall_s:.1f} s, "
            f"recovered {self.recover_s:.1f} s after the heal{seen}"
        )


@dataclass
class Cluster:
    """A running three-host dialer and what a scenario needs around it."""

    stack: ChaosStack
    runtime: Runtime
    receiver: Receiver
    hook_url: str
    witness: CarrierWitness
    log_dir: Path
    account_id: int = 0
    campaign_id: int = 0
    cap: int = 0
    cps: float = 0.0
    contacts: int = 0
    reports: list[FaultReport] = field(default_factory=list)

    def sim(self, path: str, body: dict[str, Any]) -> None:
        import httpx

        httpx.post(self.stack.sim_url + path, json=body, timeout=5).raise_for_status()

    def start_campaign(self, contacts: int, *, cap: int, cps: float) -> None:
        """A running campaign of `contacts` generated contacts, one attempt each, in an
        account of `cap` live calls and `cps` calls per second whose events go to the
        receiver; its pacer kicked."""
        url = self.runtime.settings.database_url
        with transaction(url) as session:
            account = account_named(session, "chaos", max_concurrency=cap, cps=cps)
            account.webhook_url = self.hook_url
            account_id = account.id
        options = lifecycle.CampaignOptions(
            name="chaos", message="Hello {first_name}.", max_concurrency=cap, max_attempts=1
        )
        imported = lifecycle.import_campaign(
            url,
            self.runtime.settings.data_dir,
            account_id,
            options,
            io.BytesIO(generated_contacts(contacts)),
        )
        with transaction(url) as session:
            session.execute(
                update(Campaign)
                .where(Campaign.id == imported.campaign_id)
                .values(retry_policy=NO_RETRIES)
            )
            lifecycle.start(session, account_id, imported.campaign_id, actor="test")
        self.account_id, self.campaign_id = account_id, imported.campaign_id
        self.cap, self.cps, self.contacts = cap, cps, contacts
        self.stack.kick_pacer(account_id)

    def wait_for_calls(self, n: int, timeout_s: float = 60.0) -> None:
        wait_until(
            lambda: self.witness.figures().calls_created >= n, timeout_s, f"{n} calls created"
        )

    def partition(
        self, host: Host, seconds: float, first: tuple[str, ...] = (), lead_s: float = 0.0
    ) -> FaultReport:
        """Cut `host` off for `seconds` (its `first` links alone for the first `lead_s` of
        them), heal it, and wait (up to 60 s) for a call to be created after the heal
        while contacts remain."""
        before = self.witness.figures().calls_created
        done_before = self._report()["contacts"]["done"]
        started = time.monotonic()
        try:
            if first:
                host.cut(*first)
                time.sleep(lead_s)
            host.cut()
            time.sleep(seconds - lead_s)
            ended_during = self._report()["contacts"]["done"] - done_before
        finally:
            host.heal()
        healed = time.monotonic()
        during = self.witness.figures().calls_created - before
        deadline = healed + 60
        while self.witness.figures().calls_created - before - during == 0:
            if self._finished() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        recover_s = 0.0 if self._finished() else time.monotonic() - healed
        creates = self.witness.creates()
        now_carrier, creates = creates[-1], creates[:-1]
        # The carrier's clock for the fault's start: its now, less the time since.
        start_carrier = now_carrier - (time.monotonic() - started)
        marks = [start_carrier, *[c for c in creates if c >= start_carrier]]
        stall = max((b - a for a, b in itertools.pairwise(marks)), default=0.0)
        report = FaultReport(
            before=before,
            during=during,
            after=0,
            fault_s=healed - started,
            ended_during=ended_during,
            recover_s=recover_s,
            stall_s=stall,
        )
        self.reports.append(report)
        return report

    def _report(self) -> dict[str, Any]:
        with transaction(self.runtime.settings.database_url) as session:
            return campaign_report(
                session, self.runtime.pool, self.account_id, self.campaign_id
            ).model_dump(mode="json")

    def _finished(self) -> bool:
        return bool(self._report()["finished"])

    def finish(self, timeout_s: float = 120.0) -> Figures:
        """Wait for every contact to end and every event to be delivered; check every
        promise (see the module); returns the carrier's figures."""
        wait_until(self._finished, timeout_s, "every contact to end")
        wait_until(lambda: self.witness.figures().live == 0, 30, "no call live at the carrier")
        figures = self.witness.figures()
        for report in self.reports:
            report.after = figures.calls_created - report.before - report.during
            report.figures = figures
        assert figures.violations(self.cap, self.cps, dials_per_number=1) == []
        assert figures.calls_created <= self.contacts
        final = self._report()
        contacts = final["contacts"]
        assert contacts["pending"] == contacts["dialing"] == contacts["live"] == 0
        assert contacts["scheduled_retry"] == contacts["waiting_for_window"] == 0
        self._check_webhooks(timeout_s=60)
        # Every lease ends with its call (a fenced round's leases by the reaper's sweep).
        pool = Keys(self.account_id).account_pool()
        wait_until(lambda: self.runtime.redis.zcard(pool) == 0, 20, "every lease to be freed")
        return figures

    def _check_webhooks(self, timeout_s: float) -> None:
        url = self.runtime.settings.database_url

        def outbox() -> dict[str, str]:
            with transaction(url) as session:
                rows = session.execute(
                    select(WebhookEvent.event_id, WebhookEvent.body).where(
                        WebhookEvent.account_id == self.account_id
                    )
                ).all()
            return {event_id: body for event_id, body in rows}

        def received() -> dict[str, set[str]]:
            bodies: dict[str, set[str]] = {}
            for request in list(self.receiver.requests):
                event = json.loads(request.body)
                bodies.setdefault(event["id"], set()).add(request.body.decode())
            return bodies

        wait_until(
            lambda: set(outbox()) <= set(received()), timeout_s, "every event to be delivered"
        )
        events = outbox()
        got = received()
        for event_id, bodies in got.items():
            assert len(bodies) == 1, f"event {event_id} delivered with different bodies"
        assert set(got) == set(events)  # and nothing the outbox does not hold
        ended = [json.loads(body)["type"] for body in events.values()]
        assert ended.count("contact.completed") == self.contacts


RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
"""The machine's RabbitMQ; each test process uses a vhost of its own (`rabbitmq_vhost`)."""


def rabbitmq_vhost(name: str) -> str:
    """A fresh RabbitMQ vhost `name` (deleted first, with whatever a previous run left in
    its queues) that guest may use; returns the broker URL naming it."""
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60)
    for args in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
    return f"{RABBITMQ_URL}/{name}"


@contextmanager
def running_cluster(tmp_path: Path, broker: str = "redis", hosts: int = 3) -> Iterator[Cluster]:
    """Three hosts on the tests' databases, with Celery's broker on `broker` (`redis`: the
    tests' Redis database; `rabbitmq`: a vhost of this test process's own)."""
    broker_url = rabbitmq_vhost(f"dialer_test_{_INDEX}") if broker == "rabbitmq" else None
    settings = Settings(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        data_dir=tmp_path,
        provider="simulator",
        celery_broker_url=broker_url,
    )
    receiver = Receiver()
    with (
        serve_app(receiver) as receiver_url,
        chaos_stack(
            settings,
            tmp_path / "logs",
            hosts=hosts,
            time_scale=TIME_SCALE,
            extra_env={**HOST_ENV, "DATA_DIR": str(tmp_path)},
        ) as stack,
    ):
        runtime = Runtime(settings)
        yield Cluster(
            stack,
            runtime,
            receiver,
            receiver_url + "/hook",
            CarrierWitness(stack.sim_url),
            tmp_path / "logs",
        )
