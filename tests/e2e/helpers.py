"""Campaign set-up and checks shared by the end-to-end tests."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import func, select, update

from campaigns import lifecycle
from campaigns.reports import campaign_report
from dialer.cli.demo import generated_contacts
from dialer.pool import Keys
from models import LIVE_ATTEMPT_STATUSES, CallAttempt, Campaign, transaction
from tests.e2e.conftest import Stack
from tests.factories import account_named
from tests.support import wait_until
from workers.enqueue import kick_pacer

FAST_RETRIES = {
    "busy": {"retry": True, "delay_s": 0.2},
    "no-answer": {"retry": True, "delay_s": 0.2},
    "failed": {"retry": True, "delay_s": 0.2},
    "machine": {"retry": False, "delay_s": 0.2},
}
"""Every retry 0.2 s after its attempt: stored as the campaign's matrix by `start_campaign`
(below the operators' 60 s floor; the stack's other waits keep their own test values, so
it does not set `DEV_TIME_SCALE`)."""


def start_campaign(
    stack: Stack,
    contacts: int,
    *,
    account: str = "e2e",
    account_cap: int = 10,
    account_cps: float = 50.0,
    first_contact: int = 0,
    **options: Any,
) -> tuple[int, int]:
    """Create the account (unless it exists) and a running campaign of `contacts`
    generated contacts."""
    url = stack.runtime.settings.database_url
    with transaction(url) as session:
        account_id = account_named(
            session, account, max_concurrency=account_cap, cps=account_cps
        ).id
    campaign_options = lifecycle.CampaignOptions(
        name="e2e",
        message="Hello {first_name}, see you {appointment_time}.",
        **options,
    )
    imported = lifecycle.import_campaign(
        url,
        stack.runtime.settings.data_dir,
        account_id,
        campaign_options,
        io.BytesIO(generated_contacts(contacts, first_contact)),
    )
    with transaction(url) as session:
        session.execute(
            update(Campaign)
            .where(Campaign.id == imported.campaign_id)
            .values(retry_policy=FAST_RETRIES)
        )
        lifecycle.start(session, account_id, imported.campaign_id, actor="test")
    kick_pacer(account_id)
    return account_id, imported.campaign_id


def report(stack: Stack, account_id: int, campaign_id: int) -> dict[str, Any]:
    with transaction(stack.runtime.settings.database_url) as session:
        figures = campaign_report(session, stack.runtime.pool, account_id, campaign_id)
        return figures.model_dump(mode="json")


def outcomes(final: dict[str, Any]) -> dict[str, int]:
    """The report's final outcomes flattened, the nonzero ones: `answered`, `busy`, ...,
    `machine.<AnsweredBy>`, `failed.<error code>`."""
    flat: dict[str, int] = {}
    for name, value in final["outcomes"].items():
        if isinstance(value, dict):
            flat.update({f"{name}.{key}": n for key, n in value.items() if n})
        elif value:
            flat[name] = value
    return flat


def wait_finished(
    stack: Stack, account_id: int, campaign_id: int, timeout_s: float = 90
) -> dict[str, Any]:
    wait_until(
        lambda: report(stack, account_id, campaign_id)["finished"], timeout_s, "campaign to finish"
    )
    return report(stack, account_id, campaign_id)


def assert_clean_end(
    stack: Stack, account_id: int, campaign_id: int, max_attempts: int
) -> dict[str, Any]:
    """Every contact final, no live attempt, no lease left, and the simulator (the
    independent witness) saw no number dialled more than the policy allows."""
    final = report(stack, account_id, campaign_id)
    contacts = final["contacts"]
    assert contacts["pending"] == contacts["waiting_for_window"] == 0
    assert contacts["scheduled_retry"] == contacts["dialing"] == contacts["live"] == 0
    with transaction(stack.runtime.settings.database_url) as session:
        live = session.scalar(
            select(func.count()).where(
                CallAttempt.campaign_id == campaign_id,
                CallAttempt.status.in_(LIVE_ATTEMPT_STATUSES),
            )
        )
    assert live == 0
    # A lease a killed pacer round took before its commit has no attempt row; the reaper
    # (beat, every 5 s) releases it under the pool lock. Wait for that pass, then the pool
    # must be empty: every lease belongs to a live call, and there are none.
    pool = Keys(account_id).account_pool()
    wait_until(lambda: stack.runtime.redis.zcard(pool) == 0, 15, "the reaper to free leases")
    assert stack.runtime.redis.zcard(pool) == 0
    stats = stack.sim("GET", "/_sim/stats")
    assert stats["max_dials_per_number"] <= max_attempts
    return stats
