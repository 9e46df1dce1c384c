"""Calling windows on the real stack (worker, beat, simulator): a contact is dialled only
inside its own window, whatever the others do."""

from __future__ import annotations

import io
from datetime import timedelta

from sqlalchemy import select

from campaigns import lifecycle
from dialer.windows import daytime_zone
from models import CallJob, JobStatus, transaction, utcnow
from tests.e2e.conftest import Stack
from tests.e2e.helpers import report
from tests.factories import account_named
from tests.support import wait_until
from workers.enqueue import kick_pacer


def test_contacts_at_night_wait_for_their_window(stack: Stack) -> None:
    stack.start_worker(concurrency=2)
    now = utcnow()
    day, night = daytime_zone(now), daytime_zone(now + timedelta(hours=12))  # 13:xx, 01:xx
    rows = ["first_name,phone,timezone"]
    rows += [f"Ada,(201) 555-01{i:02d},{day}" for i in range(4)]
    rows += [f"Bob,(201) 555-01{i:02d},{night}" for i in range(4, 8)]
    url = stack.runtime.settings.database_url
    with transaction(url) as session:
        account_id = account_named(session, "e2e-windows", max_concurrency=4, cps=20).id
    imported = lifecycle.import_campaign(
        url,
        stack.runtime.settings.data_dir,
        account_id,
        lifecycle.CampaignOptions(name="windows", message="Hello {first_name}.", max_attempts=1),
        io.BytesIO(("\n".join(rows) + "\n").encode()),
    )
    campaign_id = imported.campaign_id
    with transaction(url) as session:
        lifecycle.start(session, account_id, campaign_id, actor="test")
    kick_pacer(account_id)

    wait_until(
        lambda: report(stack, account_id, campaign_id)["contacts"]["done"] == 4,
        60,
        "the daytime contacts to be called",
    )
    stats = stack.sim("GET", "/_sim/stats")
    assert stats["calls_created"] == 4  # the witness: nobody at night was rung
    with transaction(url) as session:
        waiting = session.scalars(
            select(CallJob).where(CallJob.campaign_id == campaign_id, CallJob.zones == [night])
        ).all()
    assert len(waiting) == 4
    assert {job.status for job in waiting} == {JobStatus.PENDING}
    # Due at 09:00 in their zone, about eight hours from now (at 01:xx there).
    assert all(
        timedelta(hours=7) < job.next_due_at - now < timedelta(hours=8, minutes=1)
        for job in waiting
    )
    assert report(stack, account_id, campaign_id)["status"] == "running"
    with transaction(url) as session:
        lifecycle.cancel(session, account_id, campaign_id, actor="test")
