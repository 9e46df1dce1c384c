"""Two tenants on one installation, one of them hostile, on the real stack (the simulator,
the API, a Celery worker and beat): whatever the hostile account sends, the other
account's campaign, schedule, single call and webhooks go on as if it were alone.

The hostile account (issue 20): a schedule whose caller ID it removed (its firing raises),
a webhook receiver that answers every delivery with a gzip bomb (1 GiB unpacked), a try
to take the other account's caller ID, and a flood of `wait` requests. The promises are
read at the carrier (the simulator's stats) and at the other account's receiver.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from campaigns import accounts, lifecycle, schedules
from dialer.cli.demo import generated_contacts
from models import (
    CallAttempt,
    ScheduleRun,
    ScheduleRunStatus,
    WebhookEvent,
    WebhookStatus,
    transaction,
    utcnow,
)
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.helpers import assert_clean_end, start_campaign, wait_finished
from tests.factories import account_named, make_api_key, make_caller_id
from tests.receiver import Receiver
from tests.servers import serve_app
from tests.support import daytime_number, wait_until

GOOD_KEY = "dk_test-key-good-" + "g" * 32
EVIL_KEY = "dk_test-key-evil-" + "e" * 32
MAX_WAITERS = 3
FLOOD = 8
GOOD_NUMBER = "+14155550102"  # numbers the simulator's provider account owns
EVIL_NUMBER = "+14155550103"


@pytest.fixture
def stack(tmp_path: Path, committed_db: str, redis_client: Any) -> Iterator[Stack]:
    with running_stack(
        tmp_path,
        api_settings={"max_waiters_per_account": MAX_WAITERS},
        owned_numbers=["+15005550006", GOOD_NUMBER, EVIL_NUMBER],
    ) as run:
        yield run


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _schedule(url: str, account: str, source: Path, options: dict[str, Any], ago: int) -> int:
    """A minutely schedule of `account` whose first occurrence is `ago` minutes past: due at
    beat's first tick."""
    with transaction(url) as session:
        return schedules.create_schedule(
            session,
            account_named(session, account),
            name=f"{account} reminders",
            cron="* * * * *",
            timezone="Europe/London",
            csv_path=source,
            options={"message": "Hello {first_name}.", **options},
            actor="test",
            now=utcnow() - timedelta(minutes=ago),
        ).id


def _runs(url: str, schedule_id: int) -> list[ScheduleRun]:
    with transaction(url) as session:
        return list(
            session.scalars(
                select(ScheduleRun)
                .where(ScheduleRun.schedule_id == schedule_id)
                .order_by(ScheduleRun.occurrence)
            )
        )


def _events(url: str, account_id: int) -> list[WebhookEvent]:
    with transaction(url) as session:
        return list(
            session.scalars(select(WebhookEvent).where(WebhookEvent.account_id == account_id))
        )


def test_a_hostile_tenant_leaves_the_other_tenants_campaign_schedule_and_webhooks_alone(
    stack: Stack, tmp_path: Path
) -> None:
    url = stack.runtime.settings.database_url
    receiver = Receiver()
    receiver.bombs.add("/evil")
    with serve_app(receiver) as base, httpx.Client(base_url=stack.api_url, timeout=30) as api:
        stack.env.update({"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true", "SCHEDULE_TICK_S": "1"})
        with transaction(url) as session:
            for name, key in (("good", GOOD_KEY), ("evil", EVIL_KEY)):
                account = account_named(session, name, max_concurrency=10, cps=50)
                account.webhook_url = f"{base}/{name}"
                make_api_key(session, account, key)
            make_caller_id(session, account_named(session, "evil"), EVIL_NUMBER)
        # The other account's caller ID cannot be taken.
        assert api.post(
            "/v1/numbers", json={"number": GOOD_NUMBER}, headers=_headers(GOOD_KEY)
        ).status_code == (201)
        taken = api.post("/v1/numbers", json={"number": GOOD_NUMBER}, headers=_headers(EVIL_KEY))
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "number_taken")

        # A poisoned schedule (its caller ID removed after it was made), due first, and the
        # good account's schedule, due after it at the same tick.
        source = tmp_path / "reminders.csv"
        source.write_bytes(generated_contacts(2, 300))  # numbers no campaign here calls
        poisoned = _schedule(url, "evil", source, {"from_number": EVIL_NUMBER}, ago=3)
        with transaction(url) as session:
            accounts.remove_number(session, account_named(session, "evil").id, EVIL_NUMBER)
        reminders = _schedule(url, "good", source, {}, ago=2)

        # Both accounts dial a campaign; the hostile one's events go to the gzip bomb.
        good_id, good_campaign = start_campaign(stack, 12, account="good")
        evil_id, _ = start_campaign(stack, 6, account="evil", first_contact=100)
        # Calls due just before their `wait` ends (`call_at`): every `wait` on them holds
        # (a call due past the deadline, or in a paused campaign, is answered at once) until
        # the refusals are in; then the campaign is paused, so none of them is dialled.
        held = lifecycle.import_campaign(
            url,
            stack.runtime.settings.data_dir,
            evil_id,
            lifecycle.CampaignOptions(name="held", message="Hi {first_name}."),
            io.BytesIO(generated_contacts(1, 200)),
        ).campaign_id
        with transaction(url) as session:
            lifecycle.start(session, evil_id, held, actor="test")
        stack.start_worker()
        stack.start_beat()

        # The flood of `wait` requests and the good account's one call, at the same time.
        flood_call = {
            "to_number": daytime_number(),
            "message": "Hi",
            "campaign_id": held,
            "call_at": (utcnow() + timedelta(seconds=9)).isoformat(),
        }
        with ThreadPoolExecutor(FLOOD + 1) as senders:
            flood = [
                senders.submit(
                    api.post,
                    "/v1/calls",
                    json={**flood_call, "wait": 10},
                    headers=_headers(EVIL_KEY),
                )
                for _ in range(FLOOD)
            ]
            single = senders.submit(
                api.post,
                "/v1/calls",
                json={"to_number": daytime_number(), "message": "Hello.", "wait": 25},
                headers=_headers(GOOD_KEY),
            )
            refused = FLOOD - MAX_WAITERS
            wait_until(lambda: sum(f.done() for f in flood) >= refused, 5, "the refusals")
            with transaction(url) as session:
                lifecycle.pause(session, evil_id, held, actor="test")
            answered = single.result(40)
            statuses = sorted(f.result(40).status_code for f in flood)
        assert statuses == [201] * MAX_WAITERS + [429] * (FLOOD - MAX_WAITERS)
        assert answered.status_code == 201, answered.text
        # Dialled and ended within its wait, whatever the carrier drew (a no-answer is
        # queued again for its retry).
        assert answered.json()["outcome"] is not None, answered.json()

        # The good account's campaign finishes cleanly, as the carrier saw it.
        final = wait_finished(stack, good_id, good_campaign, timeout_s=120)
        assert final["contacts"]["total"] == 12
        assert_clean_end(stack, good_id, good_campaign, max_attempts=3)

        # The poisoned schedule failed alone; the good one fired at the same tick and its
        # campaign is dialled.
        wait_until(lambda: bool(_runs(url, reminders)), 60, "the good schedule to fire")
        [failed, *_] = _runs(url, poisoned)
        assert (failed.status, failed.error_code) == (
            ScheduleRunStatus.FAILED,
            "from_number_not_found",
        )
        [fired, *_] = _runs(url, reminders)
        assert (fired.status, fired.accepted) == (ScheduleRunStatus.OK, 2)

        def dialled() -> int:
            with transaction(url) as session:
                return (
                    session.scalar(
                        select(func.count(func.distinct(CallAttempt.job_id))).where(
                            CallAttempt.campaign_id == fired.campaign_id
                        )
                    )
                    or 0
                )

        wait_until(lambda: dialled() == 2, 60, "the scheduled campaign to be dialled")

        # Webhooks: the bomb was served and read (bounded), the good account's events are
        # all delivered, and the worker that read the bombs still runs.
        wait_until(lambda: bool(receiver.at("/evil")), 60, "a delivery to the gzip bomb")
        wait_until(
            lambda: all(e.status is WebhookStatus.DELIVERED for e in _events(url, good_id)),
            90,
            "the good account's webhooks",
        )
        assert len(receiver.at("/good")) >= 12  # one call.completed or more per contact
        assert all(worker.poll() is None for worker in stack.workers)
