"""The pacer: keeps an account's pool full without ever exceeding it.

One pacer per account runs at a time, under a Redis lock whose value is a fencing token
(a counter bumped on every acquisition, never below the highest token PostgreSQL has seen
for the account, `PacerFence`). The token is checked twice in each round, so a pacer whose
lock lapsed (its host cut off, its process paused) and was taken by another can neither
admit nor commit: the admission script takes no lease unless the lock still holds the token
(`AcquireResult.FENCED`), and the round's transaction compares-and-sets the account's
highest token (`PacerFence`) before it commits, rolling back when a newer pacer wrote a
higher one (the new pacer writes its token when it takes the lock). The lock is also renewed
when it was last renewed `RENEW_EVERY_S` ago (well within its TTL). Before each round the
pacer checks that Redis neither lost the pool nor failed over since it was built
(`ensure_pool`: one round trip) and rebuilds it from PostgreSQL first if it did. A
round claims due contacts with `FOR UPDATE SKIP LOCKED`, takes a lease for each in the
pool, creates the attempt in `dialing` and, after the commit, hands the attempts
(`DialOrder`: its id, campaign and account) to `enqueue` (the Celery `place_call` task).
Between rounds it sleeps on the account's wake list (`BLPOP`) for the smallest of: the CPS
limiter's wait, the next due contact, and `MAX_SLEEP_S`. Nothing waits in the broker: the
broker only holds dials that can happen now.

Calling windows (`dialer.windows`): a contact's due time is its next opening, so the claim
stays one range scan of `ix_call_jobs_campaign_due` per campaign however many contacts
wait for their window; the claimed batch then goes through `timing.admit` (window closed
meanwhile, `call_before` passed, number over a frequency cap). Contacts of a campaign past its
`end_at` end `expired` in one statement, and the campaign completes. When nothing is due
and no call is in progress, the pacer stops until the next due time, `start_at` or `end_at`
(a Redis key the beat's kick honours; an explicit kick still runs it), instead of polling.

Caller IDs (`dialer.pool.caller_ids`): each contact's candidates come from its pool (sticky,
local, then the rest), and the admission script picks the number within its limits; a
contact whose pool is spent stays pending and its campaign's waiting reason is recorded
(`Keys.campaign_waiting`) for the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import exists, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dialer.calls import claimed, expire_pending_jobs, move_job
from dialer.campaign_state import PACER, CampaignAction, transition
from dialer.dispatch.dialing import DialOrder
from dialer.dispatch.timing import admit
from dialer.frequency import caps_of
from dialer.metrics import DIALS_DISPATCHED, PACER_ROUNDS, observe_due_to_dial
from dialer.pool import AcquireResult, Fence, Keys, LeaseRequest, ProviderKeys
from dialer.pool.caller_ids import candidates, last_caller_ids, pool_ids, usable_numbers
from dialer.pool.leases import (
    ProviderLimits,
    acquire_scopes,
    caller_id_slot,
    dial_clock,
    lease_seconds,
    rate_limits,
)
from dialer.pool.reconcile import ensure_pool, lock_account_pool
from dialer.runtime import Runtime
from dialer.webhooks.outbox import record_contacts_ended
from models import (
    Account,
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignStatus,
    JobStatus,
    PacerFence,
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
RENEW_EVERY_S = 1.0
"""A round renews the lock (and checks its fence) when the last renewal is this old: until
the lock's TTL has passed since, no other pacer can have taken it."""

ROUND_IDLE_TIMEOUT_MS = int(LOCK_TTL_S * 1000 / 2)
"""A dispatch round's transaction is ended by the server when its client has been silent
this long (`idle_in_transaction_session_timeout`): well within the lock's TTL, far above a
round's own waits (one Redis round trip between statements)."""

_ACQUIRE = """
local token = redis.call('INCR', KEYS[2])
if token <= tonumber(ARGV[1]) then
  token = tonumber(ARGV[1]) + 1
  redis.call('SET', KEYS[2], token)
end
if redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2]) then return token end
return 0
"""
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

    order: DialOrder
    send_at: float


@dataclass
class Round:
    """The result of one dispatch round."""

    dials: list[Dial] = field(default_factory=list)
    wait_s: float = MAX_SLEEP_S
    work_left: bool = False
    """Some running campaign still has contacts pending or in progress."""
    idle_until: datetime | None = None
    """Nothing was due and no call is in progress: nothing can happen before this moment
    (the next due contact, `start_at` or `end_at`) unless a campaign starts or resumes."""


@dataclass
class PacerRun:
    """The result of one pacer run (`run_pacer`)."""

    locked: bool
    dispatched: int = 0
    rounds: int = 0
    work_left: bool = False


class PacerFencedError(Exception):
    """A newer pacer's token is recorded for the account: this round must not commit."""


class PacerLock:
    """The account's pacer lock with a fencing token."""

    def __init__(self, runtime: Runtime, account_id: int) -> None:
        self.redis = runtime.redis
        self.database_url = runtime.settings.database_url
        self.account_id = account_id
        self.keys = Keys(account_id)
        self.token = ""
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._renew = self.redis.register_script(_RENEW)
        self._unlock = self.redis.register_script(_UNLOCK)

    def acquire(self) -> bool:
        """Take the lock with a new token, above every token PostgreSQL has seen for the
        account (Redis may have lost its counter in a failover), and record the token there:
        from then on a round of an earlier holder cannot commit (`record_token`)."""
        with transaction(self.database_url) as session:
            floor = session.scalar(
                select(PacerFence.token).where(PacerFence.account_id == self.account_id)
            )
        keys = [self.keys.pacer_lock(), self.keys.pacer_fence()]
        token = int(self._acquire(keys=keys, args=[floor or 0, int(LOCK_TTL_S * 1000)]))
        if not token:
            return False
        self.token = str(token)
        with transaction(self.database_url) as session:
            record_token(session, self.account_id, token)
        return True

    @property
    def fence(self) -> Fence:
        return Fence(self.keys.pacer_lock(), self.token)

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
    enqueue: Callable[[list[DialOrder]], None],
    budget_s: float = 30.0,
) -> PacerRun:
    """Dispatch the account's due contacts for up to `budget_s` seconds.

    Returns without doing anything (`locked=False`) if another pacer holds the lock. Before
    each round the pool is rebuilt if Redis lost it or failed over (`ensure_pool`). Stops
    at once when a round finds its fencing token superseded.
    Stops early, leaving `work_left` False, when the round finds nothing to do before a
    moment past this run's budget (`Round.idle_until`): until then the beat's kick leaves
    the account alone (`accounts_needing_pacer`). A pacer that finds the lock taken wakes
    the running one, so a campaign just started or resumed is seen at once.
    """
    keys = Keys(account_id)
    wake = keys.wake()
    lock = PacerLock(runtime, account_id)
    renewed_at = time.monotonic()
    if not lock.acquire():
        runtime.redis.lpush(wake, "kick")
        return PacerRun(locked=False)
    run = PacerRun(locked=True)
    deadline = time.monotonic() + budget_s
    runtime.redis.delete(pacer_idle_key(account_id))
    provider = ProviderLimits.of(runtime.settings)
    try:
        while time.monotonic() < deadline:
            if time.monotonic() - renewed_at >= RENEW_EVERY_S:
                checked_at = time.monotonic()
                if not lock.still_held():
                    break
                renewed_at = checked_at
            ensure_pool(runtime.pool, runtime.settings.database_url, account_id, provider)
            try:
                result = dispatch_round(runtime, account_id, lock.fence)
            except PacerFencedError:
                log.warning("pacer_fenced", account_id=account_id, token=lock.token)
                break
            _send_on_time(result.dials, enqueue)
            run.rounds += 1
            PACER_ROUNDS.labels("dialled" if result.dials else "idle").inc()
            DIALS_DISPATCHED.inc(len(result.dials))
            run.dispatched += len(result.dials)
            run.work_left = result.work_left
            if not result.work_left:
                break
            if result.idle_until is not None:
                idle_s = (result.idle_until - runtime.clock()).total_seconds()
                if idle_s > deadline - time.monotonic():
                    runtime.redis.set(pacer_idle_key(account_id), "1", px=int(idle_s * 1000))
                    run.work_left = False
                    break
            if result.dials and result.wait_s <= 0:
                continue
            timeout = max(0.001, min(result.wait_s, deadline - time.monotonic()))
            if runtime.redis.blpop([wake], timeout=timeout):
                runtime.redis.delete(wake)
    finally:
        lock.release()
    return run


def _send_on_time(dials: list[Dial], enqueue: Callable[[list[DialOrder]], None]) -> None:
    """Enqueue each dial when its CPS slot opens (at most `BOOKING_HORIZON_S` ahead)."""
    for dial in sorted(dials, key=lambda d: d.send_at):
        delay = dial.send_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        enqueue([dial.order])


def pacer_idle_key(account_id: int) -> str:
    """Present while the account's pacer stopped with nothing to do until it lapses."""
    return f"{Keys(account_id).tag}:pacer:idle"


def dispatch_round(runtime: Runtime, account_id: int, fence: Fence | None = None) -> Round:
    """Claim due contacts, lease a slot and book a CPS slot for each, create their
    attempts; commit. "Now" is `runtime.clock()` for due times and windows.

    With the pacer's `fence`, leases are taken only while its lock holds its token, and
    the round commits only if no newer token was recorded for the account
    (`record_token`). Without one (a round run on its own, as
    the tests do), neither is checked.

    The caller enqueues `Round.dials` after this returns (the commit is done), each at its
    `send_at`.

    Raises:
        PacerFencedError: the lock no longer holds the token, or a newer pacer recorded its
            own; the round was rolled back (no lease was taken in the first case).
    """
    out = Round()
    now = runtime.clock()
    with transaction(runtime.settings.database_url) as session:
        # A round lost in a database crash only leaves its contacts pending (they are
        # dialled again) and leases that lapse; `place_call`'s own synchronous commit makes
        # every earlier WAL record, this round's included, durable before any call is made.
        relax_durability(session)
        # A pacer cut off mid-round (its host partitioned: the connection stays open, the
        # server waits for its next statement) would hold the account's pool lock until
        # TCP gives up, hours later, and every other pacer and rebuild would wait on it:
        # the server ends a round idle that long instead.
        session.execute(
            text(f"SET LOCAL idle_in_transaction_session_timeout = {ROUND_IDLE_TIMEOUT_MS}")
        )
        lock_account_pool(session, account_id)
        account = session.get_one(Account, account_id)
        running = _running(session, account_id)
        campaigns = [c for c in running if c.start_at is None or c.start_at <= now]
        upcoming = [c.start_at for c in running if c.start_at and c.start_at > now]
        upcoming += [c.end_at for c in campaigns if c.end_at and c.end_at > now]
        for campaign in campaigns:
            if campaign.end_at is not None and campaign.end_at <= now:
                expired = expire_pending_jobs(session, campaign.id)
                record_contacts_ended(session, account_id, expired, now)
                log.info("campaign_ended", campaign_id=campaign.id, expired=len(expired))
        if not campaigns:
            out.work_left = bool(running)
            out.idle_until = min(upcoming, default=None)
            return out
        keys = Keys(account_id)
        free = account.max_concurrency - runtime.pool.live(keys.account_pool())
        lanes = _due_jobs(session, campaigns, min(max(free, 0), MAX_BATCH) + 1, now)
        by_id = {c.id: c for c in campaigns}
        claimed_jobs = _round_robin(lanes)
        admission = admit(
            session,
            claimed_jobs,
            by_id,
            account_id,
            caps_of(account.frequency_caps),
            now,
        )
        jobs = admission.dial
        record_contacts_ended(session, account_id, admission.expired, now)
        if admission.rescheduled or admission.expired:
            log.debug(
                "contacts_not_callable",
                account_id=account_id,
                rescheduled=admission.rescheduled,
                expired=admission.expired,
            )
        pools = {job.id: pool_ids(by_id[job.campaign_id], job) for job in jobs}
        numbers = usable_numbers(session, (n for pool in pools.values() for n in pool))
        last_from = last_caller_ids(
            session, account_id, [j.phone_e164 for j in jobs if len(pools[j.id]) > 1]
        )
        full: set[int] = set()
        waiting: dict[int, str] = {}
        presentable = []
        for job in jobs:
            pool = [numbers[n] for n in pools[job.id] if n in numbers]
            if pool:
                presentable.append(
                    (job, candidates(pool, job.phone_e164, last_from.get(job.phone_e164)))
                )
            else:
                full.add(job.campaign_id)
                waiting[job.campaign_id] = WAITING_CALLER_IDS_RESTED
        ids = _attempt_ids(session, len(presentable))
        provider = ProviderLimits.of(runtime.settings)
        requests = []
        for (job, (ordered, preferred)), attempt_id in zip(presentable, ids, strict=True):
            campaign = by_id[job.campaign_id]
            requests.append(
                LeaseRequest(
                    str(attempt_id),
                    lease_seconds(campaign, job),
                    acquire_scopes(account, campaign, provider),
                    rate_limits(account, campaign, provider),
                    own_scope=keys.campaign_pool(campaign.id),
                    caller_ids=tuple(caller_id_slot(c) for c in ordered),
                    preferred=preferred,
                )
            )
        results = (
            runtime.pool.acquire_many(
                requests,
                horizon_s=BOOKING_HORIZON_S,
                generation_keys=(keys.generation(), ProviderKeys().generation()),
                clock=dial_clock(now, runtime.settings.dev_time_scale),
                fence=fence,
            )
            if requests
            else []
        )
        blocked = False
        for (job, _), attempt_id, request, got in zip(
            presentable, ids, requests, results, strict=False
        ):
            campaign = by_id[job.campaign_id]
            lease_s = request.lease_s
            if got.result is AcquireResult.POOL_LOST:
                out.wait_s = 0.0  # the next round rebuilds the pool, after this one commits
                blocked = True
                break
            if got.result is AcquireResult.FENCED:
                raise PacerFencedError(f"account {account_id}: the lock left token {fence}")
            if got.result is AcquireResult.RATE_LIMITED:
                out.wait_s = got.wait_s
                blocked = True
                break
            if got.result is AcquireResult.FULL:
                if got.full_scope != request.own_scope:
                    # The account, the provider account or a caller ID is full: wait for a
                    # release. The provider's is freed by any account's: the next one wakes
                    # this pacer, or another that waits for it too.
                    if got.full_scope == ProviderKeys().pool():
                        runtime.pool.wait_for_provider(keys.wake())
                    blocked = True
                    break
                full.add(campaign.id)
                continue
            if got.result is AcquireResult.CALLER_IDS_SPENT:
                # The contact stays pending; the campaign waits for a number of its pool.
                full.add(campaign.id)
                waiting[campaign.id] = WAITING_CALLER_IDS_SPENT
                if got.wait_s > 0:
                    out.wait_s = min(out.wait_s, got.wait_s)
                continue
            session.add(
                CallAttempt(
                    id=attempt_id,
                    job_id=job.id,
                    campaign_id=campaign.id,
                    account_id=account_id,
                    attempt_no=job.attempt_count + 1,
                    phone_e164=job.phone_e164,
                    from_e164=got.caller_id or request.caller_ids[0].e164,
                    status=AttemptStatus.DIALING,
                    lease_expires_at=utcnow() + timedelta(seconds=lease_s),
                    due_at=job.next_due_at,
                )
            )
            observe_due_to_dial(job.next_due_at, campaign.started_at)
            move_job(job, claimed(job))
            order = DialOrder(attempt_id, campaign.id, account_id)
            out.dials.append(Dial(order, time.monotonic() + got.delay_s))
        _note_waiting(runtime, keys, waiting)
        idle: set[int] = set()
        if (not blocked and not full and out.dials) or len(jobs) < len(claimed_jobs):
            out.wait_s = 0.0  # every claimed contact went out or was moved: more may be due
        elif not claimed_jobs:
            states = _open_work(session, list(by_id))
            dues = [due for due, _ in states.values() if due is not None]
            nearest = min([*dues, *upcoming], default=None)
            if nearest is not None:
                out.wait_s = min(MAX_SLEEP_S, max(0.0, (nearest - now).total_seconds()))
                if not any(live for _, live in states.values()):
                    out.idle_until = nearest
            idle = _complete_finished(campaigns, states)
        out.work_left = any(
            c.status is CampaignStatus.RUNNING and c.id not in idle for c in running
        )
        if fence is not None and not record_token(session, account_id, int(fence.token)):
            raise PacerFencedError(f"account {account_id}: token {fence.token} superseded")
    return out


WAITING_CALLER_IDS_SPENT = "caller_ids_spent"
"""A campaign's due contacts wait: every number of their caller-ID pool is at its
concurrency cap or its minute's or day's limit."""
WAITING_CALLER_IDS_RESTED = "caller_ids_rested"
"""A campaign's due contacts wait: no number of their caller-ID pool may be presented (each
is rested or disabled for outbound calls)."""
WAITING_TTL_S = 3 * MAX_SLEEP_S
"""How long a waiting reason stands after the round that found it: rounds renew it while
it lasts (they run at least every `MAX_SLEEP_S`)."""


def _note_waiting(runtime: Runtime, keys: Keys, waiting: dict[int, str]) -> None:
    """Record why these campaigns' due contacts wait (read by the report), one pipelined
    `SET` each with `WAITING_TTL_S`; nothing when none waits."""
    if not waiting:
        return
    pipe = runtime.redis.pipeline(transaction=False)
    for campaign_id, reason in waiting.items():
        pipe.set(keys.campaign_waiting(campaign_id), reason, px=int(WAITING_TTL_S * 1000))
    pipe.execute()


def record_token(session: Session, account_id: int, token: int) -> bool:
    """Record `token` as the account's highest pacer token unless a higher one is recorded
    (compare-and-set, `PacerFence`). Returns False when a higher one is: the caller's lock
    was taken over, and its transaction must not commit. The row stays locked until the
    transaction ends, so a pacer taking over waits for a round committing now."""
    statement = insert(PacerFence).values(account_id=account_id, token=token)
    statement = statement.on_conflict_do_update(
        index_elements=[PacerFence.account_id],
        set_={"token": statement.excluded.token},
        where=PacerFence.token <= statement.excluded.token,
    )
    return session.execute(statement.returning(PacerFence.token)).first() is not None


def _running(session: Session, account_id: int) -> list[Campaign]:
    """The account's running campaigns, started or not yet at their `start_at`."""
    return list(
        session.scalars(
            select(Campaign)
            .where(Campaign.account_id == account_id, Campaign.status == CampaignStatus.RUNNING)
            .order_by(Campaign.priority.desc(), Campaign.id)
        )
    )


def _due_jobs(
    session: Session, campaigns: list[Campaign], limit: int, now: datetime
) -> list[list[CallJob]]:
    """Due contacts per campaign, locked for this round (`FOR UPDATE SKIP LOCKED`): one
    range scan of `ix_call_jobs_campaign_due` each."""
    lanes = []
    for campaign in campaigns:
        jobs = session.scalars(
            select(CallJob)
            .where(
                CallJob.campaign_id == campaign.id,
                CallJob.status == JobStatus.PENDING,
                CallJob.next_due_at <= now,
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


def _open_work(
    session: Session, campaign_ids: list[int]
) -> dict[int, tuple[datetime | None, bool]]:
    """Per campaign, in one query: its earliest pending due time (the first entry of
    `ix_call_jobs_campaign_due`; a min over an IN list would scan them all) and whether a
    contact is in progress (its end may make it due again)."""
    first_due = (
        select(CallJob.next_due_at)
        .where(CallJob.campaign_id == Campaign.id, CallJob.status == JobStatus.PENDING)
        .order_by(CallJob.next_due_at)
        .limit(1)
        .scalar_subquery()
    )
    in_progress = exists().where(
        CallJob.campaign_id == Campaign.id, CallJob.status == JobStatus.IN_PROGRESS
    )
    rows = session.execute(
        select(Campaign.id, first_due, in_progress).where(Campaign.id.in_(campaign_ids))
    )
    return {campaign_id: (due, bool(live)) for campaign_id, due, live in rows}


def _complete_finished(
    campaigns: list[Campaign], states: dict[int, tuple[datetime | None, bool]]
) -> set[int]:
    """Mark running campaigns with no contact pending or in progress as completed, except
    standing campaigns (single calls), which stay running; returns the ids of those idle
    standing campaigns (no work for the pacer until a call is placed, which kicks it)."""
    idle: set[int] = set()
    for campaign in campaigns:
        due, live = states.get(campaign.id, (None, False))
        if due is not None or live:
            continue
        if campaign.standing:
            idle.add(campaign.id)
            continue
        transition(campaign, CampaignAction.COMPLETE, actor=PACER)
        log.info("campaign_completed", campaign_id=campaign.id)
    return idle


def accounts_needing_pacer(runtime: Runtime) -> list[int]:
    """Accounts with a running campaign (a standing one only with a contact pending) whose
    pacer lock is free and which is not idle (`pacer_idle_key`)."""
    pending = exists().where(
        CallJob.campaign_id == Campaign.id, CallJob.status == JobStatus.PENDING
    )
    with transaction(runtime.settings.database_url) as session:
        accounts = session.scalars(
            select(Campaign.account_id)
            .where(Campaign.status == CampaignStatus.RUNNING, ~Campaign.standing | pending)
            .distinct()
        ).all()
    return [
        a for a in accounts if not runtime.redis.exists(Keys(a).pacer_lock(), pacer_idle_key(a))
    ]
