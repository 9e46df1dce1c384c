"""The pacer: keeps an account's pool full without ever exceeding it.

One pacer per account runs at a time, under a Redis lock whose value is a fencing token
(a counter bumped on every acquisition); each round checks the token still holds before it
dispatches. A round claims due contacts with `FOR UPDATE SKIP LOCKED`, takes a lease for
each in the pool, creates the attempt in `dialing` and, after the commit, hands the attempt
ids to `enqueue` (the Celery `place_call` task). Between rounds it sleeps on the account's
wake list (`BLPOP`) for the smallest of: the CPS limiter's wait, the next due contact, and
`MAX_SLEEP_S`. Nothing waits in the broker: the broker only holds dials that can happen now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from dialer.calls import claimed, move_job
from dialer.campaign_state import CampaignAction, transition
from dialer.pool import AcquireResult, Keys
from dialer.pool.leases import acquire_scopes, lease_seconds, rate_limits
from dialer.pool.reconcile import ensure_pool, lock_account_pool
from dialer.runtime import Runtime
from models import (
    Account,
    AttemptStatus,
    CallAttempt,
    CallerId,
    CallJob,
    Campaign,
    CampaignStatus,
    JobStatus,
    relax_durability,
    transaction,
    utcnow,
)

log = structlog.get_logger(__name__)

MAX_BATCH = 100
"""Most contacts one round claims per campaign."""
BOOKING_HORIZON_S = 0.25
"""How far ahead a round may book CPS slots: at 100 calls/s one round schedules ~25 calls
and sends each at its slot, instead of one round per call."""
MAX_SLEEP_S = 2.0
"""Longest sleep between rounds: bounds how late a newly started campaign is noticed."""
LOCK_TTL_S = 10.0
"""The pacer lock lapses this long after its holder stops renewing it (a killed worker)."""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Dial:
    """A committed attempt and the moment (`time.monotonic()`) its CPS slot opens."""

    attempt_id: int
    send_at: float


@dataclass
class Round:
    """The result of one dispatch round."""

    dials: list[Dial] = field(default_factory=list)
    wait_s: float = MAX_SLEEP_S
    work_left: bool = False
    """Some running campaign still has contacts pending or in progress."""


@dataclass
class PacerRun:
    """The result of one pacer run (`run_pacer`)."""

    locked: bool
    dispatched: int = 0
    rounds: int = 0
    work_left: bool = False


class PacerLock:
    """The account's pacer lock with a fencing token."""

    def __init__(self, runtime: Runtime, account_id: int) -> None:
        self.redis = runtime.redis
        self.keys = Keys(account_id)
        self.token = ""
        self._renew = self.redis.register_script(_RENEW)
        self._unlock = self.redis.register_script(_UNLOCK)

    def acquire(self) -> bool:
        token = str(self.redis.incr(self.keys.pacer_fence()))
        if self.redis.set(self.keys.pacer_lock(), token, nx=True, px=int(LOCK_TTL_S * 1000)):
            self.token = token
            return True
        return False

    def still_held(self) -> bool:
        """Renew the lock; False if another pacer took it (this one must stop at once)."""
        return bool(
            self._renew(keys=[self.keys.pacer_lock()], args=[self.token, int(LOCK_TTL_S * 1000)])
        )

    def release(self) -> None:
        self._unlock(keys=[self.keys.pacer_lock()], args=[self.token])


def run_pacer(
    runtime: Runtime,
    account_id: int,
    enqueue: Callable[[list[int]], None],
    budget_s: float = 30.0,
) -> PacerRun:
    """Dispatch the account's due contacts for up to `budget_s` seconds.

    Returns without doing anything (`locked=False`) if another pacer holds the lock.
    """
    lock = PacerLock(runtime, account_id)
    if not lock.acquire():
        return PacerRun(locked=False)
    run = PacerRun(locked=True)
    deadline = time.monotonic() + budget_s
    wake = Keys(account_id).wake()
    try:
        while time.monotonic() < deadline and lock.still_held():
            ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
            result = dispatch_round(runtime, account_id)
            _send_on_time(result.dials, enqueue)
            run.rounds += 1
            run.dispatched += len(result.dials)
            run.work_left = result.work_left
            if not result.work_left:
                break
            if result.dials and result.wait_s <= 0:
                continue
            timeout = max(0.001, min(result.wait_s, deadline - time.monotonic()))
            if runtime.redis.blpop([wake], timeout=timeout):
                runtime.redis.delete(wake)
    finally:
        lock.release()
    return run


def _send_on_time(dials: list[Dial], enqueue: Callable[[list[int]], None]) -> None:
    """Enqueue each dial when its CPS slot opens (at most `BOOKING_HORIZON_S` ahead)."""
    for dial in sorted(dials, key=lambda d: d.send_at):
        delay = dial.send_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        enqueue([dial.attempt_id])


def dispatch_round(runtime: Runtime, account_id: int) -> Round:
    """Claim due contacts, lease a slot and book a CPS slot for each, create their
    attempts; commit.

    The caller enqueues `Round.dials` after this returns (the commit is done), each at its
    `send_at`.
    """
    out = Round()
    with transaction(runtime.settings.database_url) as session:
        # A round lost in a database crash only leaves its contacts pending (they are
        # dialled again) and leases that lapse; `place_call`'s own synchronous commit makes
        # every earlier WAL record, this round's included, durable before any call is made.
        relax_durability(session)
        lock_account_pool(session, account_id)
        account = session.get_one(Account, account_id)
        campaigns = _running(session, account_id)
        if not campaigns:
            return out
        keys = Keys(account_id)
        free = account.max_concurrency - runtime.pool.live(keys.account_pool())
        lanes = _due_jobs(session, campaigns, min(max(free, 0), MAX_BATCH) + 1)
        jobs = _round_robin(lanes)
        ids = _attempt_ids(session, len(jobs))
        by_id = {c.id: c for c in campaigns}
        caller_ids = {
            c.id: c
            for c in session.scalars(
                select(CallerId).where(CallerId.id.in_({c.caller_id_id for c in campaigns}))
            )
        }
        full: set[int] = set()
        blocked = False
        for job, attempt_id in zip(jobs, ids, strict=True):
            if job.campaign_id in full:
                continue
            campaign = by_id[job.campaign_id]
            caller_id = caller_ids[campaign.caller_id_id]
            lease_s = lease_seconds(campaign)
            got = runtime.pool.acquire(
                str(attempt_id),
                lease_s,
                acquire_scopes(account, campaign, caller_id),
                rate_limits(account, campaign),
                horizon_s=BOOKING_HORIZON_S,
                generation_key=keys.generation(),
            )
            if got.result is AcquireResult.POOL_LOST:
                out.wait_s = 0.0  # the next round rebuilds the pool, after this one commits
                blocked = True
                break
            if got.result is AcquireResult.RATE_LIMITED:
                out.wait_s = got.wait_s
                blocked = True
                break
            if got.result is AcquireResult.FULL:
                if got.full_scope != keys.campaign_pool(campaign.id):
                    blocked = True  # the account (or caller ID) is full: wait for a release
                    break
                full.add(campaign.id)
                continue
            session.add(
                CallAttempt(
                    id=attempt_id,
                    job_id=job.id,
                    campaign_id=campaign.id,
                    account_id=account_id,
                    attempt_no=job.attempt_count + 1,
                    phone_e164=job.phone_e164,
                    from_e164=caller_id.e164,
                    status=AttemptStatus.DIALING,
                    lease_expires_at=utcnow() + timedelta(seconds=lease_s),
                    due_at=job.next_due_at,
                )
            )
            move_job(job, claimed(job))
            out.dials.append(Dial(attempt_id, time.monotonic() + got.delay_s))
        if not blocked and not full and out.dials:
            out.wait_s = 0.0  # every claimed contact went out: there may be more due now
        elif not jobs:
            next_due = _next_due(session, list(by_id))
            if next_due is not None:
                out.wait_s = min(MAX_SLEEP_S, max(0.0, (next_due - utcnow()).total_seconds()))
        _complete_finished(session, campaigns, skip=set(by_id) if jobs else set())
        out.work_left = any(c.status is CampaignStatus.RUNNING for c in campaigns)
    return out


def _running(session: Session, account_id: int) -> list[Campaign]:
    now = utcnow()
    return list(
        session.scalars(
            select(Campaign)
            .where(
                Campaign.account_id == account_id,
                Campaign.status == CampaignStatus.RUNNING,
                (Campaign.start_at.is_(None)) | (Campaign.start_at <= now),
            )
            .order_by(Campaign.priority.desc(), Campaign.id)
        )
    )


def _due_jobs(session: Session, campaigns: list[Campaign], limit: int) -> list[list[CallJob]]:
    """Due contacts per campaign, locked for this round (`FOR UPDATE SKIP LOCKED`)."""
    lanes = []
    for campaign in campaigns:
        jobs = session.scalars(
            select(CallJob)
            .where(
                CallJob.campaign_id == campaign.id,
                CallJob.status == JobStatus.PENDING,
                CallJob.next_due_at <= func.now(),
            )
            .order_by(CallJob.next_due_at, CallJob.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        lanes.append((campaign.priority, list(jobs)))
    return _priority_lanes(lanes)


def _priority_lanes(lanes: list[tuple[int, list[CallJob]]]) -> list[list[CallJob]]:
    """Group lanes by priority, highest first: within a priority, campaigns alternate."""
    groups: dict[int, list[list[CallJob]]] = {}
    for priority, jobs in lanes:
        groups.setdefault(priority, []).append(jobs)
    ordered: list[list[CallJob]] = []
    for priority in sorted(groups, reverse=True):
        ordered.append(_interleave(groups[priority]))
    return ordered


def _interleave(lanes: list[list[CallJob]]) -> list[CallJob]:
    out: list[CallJob] = []
    for i in range(max((len(lane) for lane in lanes), default=0)):
        out.extend(lane[i] for lane in lanes if i < len(lane))
    return out


def _round_robin(lanes: list[list[CallJob]]) -> list[CallJob]:
    """Higher-priority lanes first, each already interleaved across its campaigns."""
    return [job for lane in lanes for job in lane]


def _attempt_ids(session: Session, n: int) -> list[int]:
    """Reserve `n` attempt ids: a lease is taken under the id before the row is written."""
    if n == 0:
        return []
    return list(
        session.scalars(
            select(func.nextval("call_attempts_id_seq")).select_from(func.generate_series(1, n))
        )
    )


def _next_due(session: Session, campaign_ids: list[int]) -> datetime | None:
    return session.scalar(
        select(func.min(CallJob.next_due_at)).where(
            CallJob.campaign_id.in_(campaign_ids), CallJob.status == JobStatus.PENDING
        )
    )


def _complete_finished(session: Session, campaigns: list[Campaign], skip: set[int]) -> None:
    """Mark running campaigns with no contact pending or in progress as completed."""
    for campaign in campaigns:
        if campaign.id in skip:
            continue
        open_jobs = session.scalar(
            select(
                exists().where(
                    CallJob.campaign_id == campaign.id,
                    CallJob.status.in_([JobStatus.PENDING, JobStatus.IN_PROGRESS]),
                )
            )
        )
        if not open_jobs:
            transition(campaign, CampaignAction.COMPLETE)
            log.info("campaign_completed", campaign_id=campaign.id)


def accounts_needing_pacer(runtime: Runtime) -> list[int]:
    """Accounts with a running campaign whose pacer lock is free."""
    with transaction(runtime.settings.database_url) as session:
        accounts = session.scalars(
            select(Campaign.account_id).where(Campaign.status == CampaignStatus.RUNNING).distinct()
        ).all()
    return [a for a in accounts if not runtime.redis.exists(Keys(a).pacer_lock())]
