"""The simulator's calls: their state, their lives as asyncio tasks, their callbacks, the stats.

Everything here runs on one event loop (no locks); one lifecycle task per live call and one
delivery task per callback in flight, no thread per call.

A call's life (simulated seconds, times `time_scale` in wall time):
queued --(CPS gate, real seconds)--> initiated --setup_s--> ringing --ring--> in-progress
--talk (capped by TimeLimit)--> completed; or failed after setup, busy after setup in ringing,
no-answer after `Timeout` of ringing (also when the sampled ring time reaches `Timeout`).
A hang-up (update `Status`) ends it at once: `canceled` before answer, `completed` after.
With AMD (`MachineDetection`): `AsyncAmd=true` runs the TwiML at once and posts the result to
`AsyncAmdStatusCallback`; without it detection blocks the call, and the TwiML and the
`answered` callback (with `AnsweredBy`) follow the result. With `DetectMessageEnd` a
machine's result comes when its greeting ends (the beep, silence, or another end).

Once answered, the call runs its TwiML (`dialer.simulator.twiml`): `<Say>` takes time,
`<Gather>` waits for a key (a person presses one per `keypress_weights` or the number's
`keypresses_by_number`; machines never do) and posts it to its `action`, signed, then runs
the TwiML that answers; `<Hangup/>` ends the call; an update with `Twiml` replaces what
runs. Running out of TwiML leaves the callee on the line until the talk time ends (the
simulator's outcomes are the callee's). Each call keeps a log of what was said and
pressed, with simulated seconds since the answer (`GET /_sim/calls`). With `Record=true`
the `RecordingStatusCallback` (`completed`, with `RecordingSid`, `RecordingUrl`,
`RecordingDuration`) goes out when the call ends, before the final status callback.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from enum import StrEnum
from typing import Any

import aiohttp

from dialer.simulator.callbacks import deliver, fetch_action
from dialer.simulator.config import Fault, LogNormal, Outcome, SimulatorConfig
from dialer.simulator.twiml import TWIML_MAX_BYTES, TwimlError, Verb, parse_twiml

API_VERSION = "2010-04-01"
CALLBACK_SOURCE = "call-progress-events"
E164_PATTERN = r"^\+[1-9]\d{1,14}$"


class CallStatus(StrEnum):
    """Twilio `call_enum_status`."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """True once the call has ended."""
        return self not in (CallStatus.QUEUED, CallStatus.RINGING, CallStatus.IN_PROGRESS)


class CallbackEvent(StrEnum):
    """Twilio `StatusCallbackEvent` values for call progress."""

    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    COMPLETED = "completed"


MAGIC_NUMBERS: dict[str, tuple[int, str]] = {
    "+15005550001": (21217, "Phone number does not appear to be valid"),
    "+15005550002": (21214, "'To' phone number cannot be reached"),
    "+15005550003": (
        21215,
        "Account not authorized to call this number: geo permission is not enabled",
    ),
    "+15005550004": (21216, "Call blocked by Twilio blocklist"),
}
"""Twilio's test-credential magic `To` numbers for calls and the 400 errors they produce
(https://www.twilio.com/docs/iam/test-credentials): 0001 invalid (21217), 0002 cannot route
(21214), 0003 no geo permission (21215, account-level), 0004 blocked (21216)."""


class ApiError(Exception):
    """A Twilio REST error reply: HTTP `status`, Twilio `code`, `message`."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """Twilio's error body `{"code", "message", "more_info", "status"}`."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def rfc2822(moment: datetime | None) -> str | None:
    """`Tue, 31 Aug 2010 20:36:28 +0000`, Twilio's timestamp format, or None."""
    return format_datetime(moment.replace(microsecond=0)) if moment else None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Callback:
    url: str
    method: str
    params: dict[str, str]
    token: str
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class _CreateRequest:
    """A create request that passed validation and the on-arrival faults."""

    form: Mapping[str, Sequence[str]]
    to: str
    from_: str
    timeout_s: int
    time_limit_s: int


def _one(form: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The last value of a form field, as Twilio reads a repeated one, or None."""
    values = form.get(name)
    return values[-1] if values else None


@dataclass(slots=True)
class SimCall:
    """One simulated call and what its creator asked for."""

    sid: str
    index: int
    account_sid: str
    to: str
    from_: str
    outcome: Outcome
    talk_s: float
    ring_s: float
    timeout_s: int
    time_limit_s: int
    status_callback: str | None
    status_callback_method: str
    events: frozenset[CallbackEvent]
    machine_detection: str | None
    async_amd: bool
    amd_callback: str | None
    amd_callback_method: str
    twiml: str | None = None
    recording_callback: str | None = None
    """`RecordingStatusCallback` when `Record=true`; None: not recorded."""
    recording_callback_method: str = "POST"
    record: bool = False
    status: CallStatus = CallStatus.QUEUED
    date_created: datetime = field(default_factory=_now)
    date_updated: datetime = field(default_factory=_now)
    start_time: datetime | None = None
    end_time: datetime | None = None
    answered_monotonic: float | None = None
    duration_s: int | None = None
    answered_by: str | None = None
    sequence: int = 0
    task: asyncio.Task[None] | None = None
    chain: asyncio.Task[None] | None = None
    held: _Callback | None = None
    script: asyncio.Task[None] | None = None
    """The TwiML running on the answered call."""
    gathers: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    """What happened on the answered call: `{"at_s", "what", ...}`, simulated seconds since
    the answer; `what`: say, gather, key, no_key, dial, hangup, update, beep, silence,
    greeting_end, twiml_error, action_failed, recording."""

    def to_json(self) -> dict[str, Any]:
        """The call as Twilio's `api.v2010.account.call` resource."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        subresources = (
            "notifications",
            "recordings",
            "payments",
            "events",
            "siprec",
            "streams",
            "transcriptions",
            "user_defined_message_subscriptions",
            "user_defined_messages",
        )
        return {
            "sid": self.sid,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "parent_call_sid": None,
            "account_sid": self.account_sid,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "phone_number_sid": None,
            "status": self.status.value,
            "start_time": rfc2822(self.start_time),
            "end_time": rfc2822(self.end_time),
            "duration": None if self.duration_s is None else str(self.duration_s),
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"{uri}.json",
            "subresource_uris": {
                name: f"{uri}/{name.title().replace('_', '')}.json" for name in subresources
            },
        }


TIMELINE_MAX = 1_000_000
"""Most timeline entries kept per kind (oldest dropped first)."""


@dataclass(slots=True)
class Stats:
    """What the simulator saw since start or the last reset (see `Engine.stats`)."""

    create_requests: int = 0
    calls_created: int = 0
    live: int = 0
    max_concurrent: int = 0
    max_cps: int = 0
    dials_per_number: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    rejected_by_code: Counter[int] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    creates_held: int = 0
    """Create requests held by `slow-before` whose call does not exist yet."""
    hang_ups: int = 0
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    callback_attempts: int = 0
    callback_latency_sum_s: float = 0.0
    callback_latency_max_s: float = 0.0
    create_times: deque[float] = field(default_factory=deque)
    timeline_creates: deque[float] = field(default_factory=lambda: deque(maxlen=TIMELINE_MAX))
    """Monotonic time of each call created (for refill latency and achieved CPS)."""
    timeline_ends: deque[float] = field(default_factory=lambda: deque(maxlen=TIMELINE_MAX))
    """Monotonic time each terminal status callback was dispatched."""


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Filters of `GET Calls.json`: `To`, `From`, `Status`, `ParentCallSid`, and
    `StartTime` / `EndTime` bounds (`StartTime>` is on or after, `StartTime<` on or before)."""

    to: str | None = None
    from_: str | None = None
    status: str | None = None
    parent_call_sid: str | None = None
    start_on: tuple[datetime, datetime] | None = None
    start_after: datetime | None = None
    start_before: datetime | None = None
    end_on: tuple[datetime, datetime] | None = None
    end_after: datetime | None = None
    end_before: datetime | None = None

    def matches(self, call: SimCall) -> bool:
        """True when `call` passes every filter given."""
        if self.parent_call_sid is not None:
            return False  # outbound-api calls have no parent
        if self.to is not None and call.to != self.to:
            return False
        if self.from_ is not None and call.from_ != self.from_:
            return False
        if self.status is not None and call.status != self.status:
            return False
        return _in_range(call.start_time, self.start_on, self.start_after, self.start_before) and (
            _in_range(call.end_time, self.end_on, self.end_after, self.end_before)
        )


def _in_range(
    moment: datetime | None,
    on: tuple[datetime, datetime] | None,
    after: datetime | None,
    before: datetime | None,
) -> bool:
    if on is None and after is None and before is None:
        return True
    if moment is None:
        return False
    if on is not None and not on[0] <= moment < on[1]:
        return False
    if after is not None and moment < after:
        return False
    return not (before is not None and moment > before)


def parse_time_bound(raw: str, *, upper: bool) -> datetime:
    """Parse a list filter value: `YYYY-MM-DD` (a whole UTC day; `upper` gives its last
    instant) or `YYYY-MM-DDTHH:MM:SSZ` as the SDK sends it.

    Raises:
        ValueError: neither form.
    """
    raw = raw.strip()
    if len(raw) == 10:
        day = date.fromisoformat(raw)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1, microseconds=-1) if upper else start
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def day_range(raw: str) -> tuple[datetime, datetime]:
    """The [start, end) of the UTC day (or the exact second) a `StartTime=` value names."""
    start = parse_time_bound(raw, upper=False)
    width = timedelta(days=1) if len(raw.strip()) == 10 else timedelta(seconds=1)
    return start, start + width


def _sample(rng: random.Random, spec: LogNormal) -> float:
    value = rng.lognormvariate(math.log(spec.median_s), spec.sigma)
    return min(max(value, spec.minimum_s), spec.maximum_s)


class Engine:
    """Holds the calls and runs their lives. Create inside a running event loop's lifetime:
    `start()` before serving, `stop()` after."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._calls: dict[str, SimCall] = {}
        self._order: list[SimCall] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: aiohttp.ClientSession | None = None
        # Admit no more deliveries than the client has connections: the rest wait here.
        self._delivery_slots = asyncio.Semaphore(config.callback_max_connections)
        self._fault_rng = random.Random(config.seed)
        self._next_index = 0
        self._next_slot = 0.0
        self._stats = Stats()

    async def start(self) -> None:
        """Open the callback HTTP client."""
        connector = aiohttp.TCPConnector(limit=self.config.callback_max_connections)
        self._client = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def stop(self) -> None:
        """Cancel every lifecycle and delivery, close the client."""
        await self._cancel_all()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def reset(self) -> None:
        """Forget every call and statistic and cancel their tasks; reseed the RNGs."""
        await self._cancel_all()
        self._calls.clear()
        self._order.clear()
        self._fault_rng = random.Random(self.config.seed)
        self._next_index = 0
        self._next_slot = 0.0
        self._stats = Stats()

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def draw_fault(self, fault: Fault) -> bool:
        """Roll the seeded fault RNG for `fault`; count it when it fires."""
        probability = self.config.fault_probability(fault)
        if probability <= 0.0 or self._fault_rng.random() >= probability:
            return False
        self._stats.faults_injected[fault.value] += 1
        return True

    def reject(self, error: ApiError) -> ApiError:
        """Count a refused create and return the error to raise."""
        self._stats.rejected_by_code[error.code] += 1
        return error

    # -- REST operations ---------------------------------------------------------------------

    async def create_call(self, form: Mapping[str, Sequence[str]]) -> tuple[SimCall, Fault | None]:
        """Create a call from a `POST Calls.json` form (name -> values).

        Under the `slow-before` fault the request is held `slow_delay_s` real seconds before
        the call exists. The call is then created by a task of the engine, not by this
        coroutine, so it is created even when the client gave up and the server dropped the
        request; its reply fault is drawn on arrival, so a seed gives the same faults in the
        same request order whatever the delays.

        Returns:
            The call and the reply fault to apply (`502-after`, `slow`) or None.

        Raises:
            ApiError: 400 validation errors and magic numbers (21201, 21603, 21205, 21211,
                21214-21217), 429 code 20429 (fault) or 10004 (concurrency limit), 502 (fault,
                or the simulator reset while the request was held).
        """
        request = self._admit(form)
        if not self.draw_fault(Fault.SLOW_BEFORE):
            return self._create(request), self._draw_reply_fault()
        reply_fault = self._draw_reply_fault()
        created: asyncio.Future[SimCall] = asyncio.get_running_loop().create_future()
        stats = self._stats
        stats.creates_held += 1
        self._spawn(self._create_later(request, created, self.config.slow_delay_s, stats))
        # Shielded: a cancelled handler (client gone) must not cancel the creation.
        return await asyncio.shield(created), reply_fault

    async def _create_later(
        self,
        request: _CreateRequest,
        created: asyncio.Future[SimCall],
        delay_s: float,
        stats: Stats,
    ) -> None:
        try:
            await asyncio.sleep(delay_s)
        except asyncio.CancelledError:
            # Reset or stop while held: nothing was created; answer whoever still waits.
            if not created.done():
                created.set_exception(ApiError(502, 20500, "Bad Gateway"))
            raise
        finally:
            stats.creates_held -= 1  # the counters of its day, even after a reset
        try:
            call = self._create(request)
        except ApiError as error:
            created.set_exception(error)
        else:
            created.set_result(call)

    def _admit(self, form: Mapping[str, Sequence[str]]) -> _CreateRequest:
        """Validate a create request and draw the faults that refuse it on arrival."""
        self._stats.create_requests += 1
        to, from_ = _one(form, "To"), _one(form, "From")
        if not to:
            raise self.reject(ApiError(400, 21201, "No 'To' number is specified"))
        if not from_:
            raise self.reject(ApiError(400, 21603, "A 'From' phone number is required."))
        if not _one(form, "Url") and not _one(form, "Twiml") and not _one(form, "ApplicationSid"):
            raise self.reject(ApiError(400, 21205, "Url parameter is required."))
        if to in MAGIC_NUMBERS:
            code, message = MAGIC_NUMBERS[to]
            raise self.reject(ApiError(400, code, message))
        if not re.match(E164_PATTERN, to) and not to.startswith(("sip:", "client:")):
            raise self.reject(ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}"))
        timeout_s = _int_param(_one(form, "Timeout"), default=60, low=1, high=600)
        time_limit_s = _int_param(_one(form, "TimeLimit"), default=14400, low=1, high=86400)
        if self.draw_fault(Fault.THROTTLE_429):
            raise self.reject(ApiError(429, 20429, "Too Many Requests"))
        if self.draw_fault(Fault.BEFORE_502):
            raise self.reject(ApiError(502, 20500, "Bad Gateway"))
        return _CreateRequest(form, to, from_, timeout_s, time_limit_s)

    def _draw_reply_fault(self) -> Fault | None:
        if self.draw_fault(Fault.AFTER_502):
            return Fault.AFTER_502
        if self.draw_fault(Fault.SLOW):
            return Fault.SLOW
        return None

    def _create(self, request: _CreateRequest) -> SimCall:
        """Create the call an admitted request asks for and start its life.

        Raises:
            ApiError: 429 code 10004 when the concurrency limit is reached.
        """
        limit = self.config.concurrency_limit
        if limit is not None and self._stats.live >= limit:
            raise self.reject(ApiError(429, 10004, "Call concurrency limit exceeded"))
        form, to = request.form, request.to
        index = self._next_index
        self._next_index += 1
        rng = random.Random(f"{self.config.seed}:{index}")
        outcome = self.config.outcomes_by_number.get(to) or self._pick_outcome(rng)
        ring_s = _sample(rng, self.config.ring)
        talk_s = self.config.talk_seconds_by_number.get(to, _sample(rng, self.config.talk))
        events: set[CallbackEvent] = set()
        for raw in form.get("StatusCallbackEvent", []):
            for word in raw.replace(",", " ").split():
                if word in CallbackEvent.__members__.values():
                    events.add(CallbackEvent(word))
        status_callback = _one(form, "StatusCallback")
        if status_callback and not events:
            events.add(CallbackEvent.COMPLETED)  # Twilio's default event set
        call = SimCall(
            sid="CA" + uuid.uuid4().hex,
            index=index,
            account_sid=self.config.account_sid,
            to=to,
            from_=request.from_,
            outcome=outcome,
            talk_s=talk_s,
            ring_s=ring_s,
            timeout_s=request.timeout_s,
            time_limit_s=request.time_limit_s,
            status_callback=status_callback,
            status_callback_method=(_one(form, "StatusCallbackMethod") or "POST").upper(),
            events=frozenset(events),
            machine_detection=_one(form, "MachineDetection"),
            async_amd=(_one(form, "AsyncAmd") or "").lower() == "true",
            amd_callback=_one(form, "AsyncAmdStatusCallback"),
            amd_callback_method=(_one(form, "AsyncAmdStatusCallbackMethod") or "POST").upper(),
            twiml=_one(form, "Twiml"),
            record=(_one(form, "Record") or "").lower() == "true",
            recording_callback=_one(form, "RecordingStatusCallback"),
            recording_callback_method=(
                _one(form, "RecordingStatusCallbackMethod") or "POST"
            ).upper(),
        )
        self._calls[call.sid] = call
        self._order.append(call)
        self._count_create(to)
        call.task = self._spawn(self._live(call))
        return call

    def _pick_outcome(self, rng: random.Random) -> Outcome:
        weights = self.config.outcome_weights
        return rng.choices(list(weights), weights=list(weights.values()))[0]

    def _count_create(self, to: str) -> None:
        stats = self._stats
        stats.calls_created += 1
        stats.live += 1
        stats.max_concurrent = max(stats.max_concurrent, stats.live)
        stats.dials_per_number[to] += 1
        now = time.monotonic()
        stats.timeline_creates.append(now)
        stats.create_times.append(now)
        while stats.create_times and stats.create_times[0] <= now - 1.0:
            stats.create_times.popleft()
        stats.max_cps = max(stats.max_cps, len(stats.create_times))

    def fetch_call(self, sid: str) -> SimCall:
        """The call with this sid.

        Raises:
            ApiError: 404 code 20404 for an unknown sid.
        """
        call = self._calls.get(sid)
        if call is None:
            raise ApiError(404, 20404, f"The requested resource /Calls/{sid}.json was not found")
        return call

    def list_calls(self, filters: ListFilter) -> list[SimCall]:
        """Calls matching `filters`, newest first."""
        return [call for call in reversed(self._order) if filters.matches(call)]

    def update_call(self, sid: str, status: str | None, twiml: str | None = None) -> SimCall:
        """Apply `Status=completed|canceled` (hang up) to a call, or `Twiml` (replace what
        an answered call runs, at once); other updates leave it as is.

        `canceled` ends a queued or ringing call and does nothing to an answered one;
        `completed` ends any live call (`canceled` before answer, `completed` after). An ended
        call is returned unchanged.

        Raises:
            ApiError: 404 code 20404 for an unknown sid; 400 code 20001 (invalid parameter)
                for another Status; 400 code 21220 for `Twiml` on a call not in progress.
        """
        call = self.fetch_call(sid)
        if status is None and twiml is not None:
            if call.status is not CallStatus.IN_PROGRESS:
                raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
            self._note(call, "update")
            self._run_twiml(call, twiml)
            return call
        if status is None:
            return call
        if status not in (CallStatus.COMPLETED, CallStatus.CANCELED):
            raise ApiError(400, 20001, f"Invalid Status: {status}")
        if call.status.terminal:
            return call
        answered = call.status is CallStatus.IN_PROGRESS
        if status == CallStatus.CANCELED and answered:
            return call
        if call.task is not None:
            call.task.cancel()
        self._stats.hang_ups += 1
        if answered and call.answered_monotonic is not None:
            elapsed = (time.monotonic() - call.answered_monotonic) / self.config.time_scale
            self._end(call, CallStatus.COMPLETED, round(elapsed))
        else:
            self._end(call, CallStatus.CANCELED, 0)
        return call

    # -- lifecycle ---------------------------------------------------------------------------

    async def _sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(simulated_s * self.config.time_scale)

    async def _cps_gate(self) -> None:
        cps = self.config.cps_limit
        if cps is None:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / cps
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _live(self, call: SimCall) -> None:
        config = self.config
        await self._cps_gate()
        call.start_time = call.date_updated = _now()
        self._status_event(call, CallbackEvent.INITIATED, "initiated")
        await self._sleep(config.setup_s)
        if call.outcome is Outcome.FAILED:
            self._end(call, CallStatus.FAILED, 0)
            return
        call.status, call.date_updated = CallStatus.RINGING, _now()
        self._status_event(call, CallbackEvent.RINGING, CallStatus.RINGING)
        if call.outcome is Outcome.BUSY:
            await self._sleep(config.setup_s)
            self._end(call, CallStatus.BUSY, 0)
            return
        if call.outcome is Outcome.NO_ANSWER or call.ring_s >= call.timeout_s:
            await self._sleep(call.timeout_s)
            self._end(call, CallStatus.NO_ANSWER, 0)
            return
        await self._sleep(call.ring_s)
        call.status, call.date_updated = CallStatus.IN_PROGRESS, _now()
        call.answered_monotonic = time.monotonic()
        time_limit_s = float(call.time_limit_s)
        amd_result, amd_s = self._amd(call)
        if amd_result is not None and not call.async_amd:
            await self._synchronous_amd(call, amd_result, min(amd_s, time_limit_s))
            return
        talk_s = min(call.talk_s, time_limit_s)
        self._status_event(call, CallbackEvent.ANSWERED, CallStatus.IN_PROGRESS)
        self._run_twiml(call, call.twiml)
        if amd_result is not None and call.async_amd and amd_s < talk_s:
            await self._sleep(amd_s)
            call.answered_by = amd_result
            self._note_greeting_end(call)
            self._amd_event(call, amd_s)
            await self._sleep(talk_s - amd_s)
        else:
            await self._sleep(talk_s)
        self._end(call, CallStatus.COMPLETED, round(talk_s))

    async def _synchronous_amd(self, call: SimCall, answered_by: str, detect_s: float) -> None:
        """The rest of an answered call under synchronous AMD (no `AsyncAmd`).

        Detection blocks the call, as Twilio's does: the TwiML (the talk) starts only once
        the result is known, so with `DetectMessageEnd` a message starts after a machine's
        greeting, and the `answered` callback, the moment Twilio would fetch the call's Url,
        goes out then, carrying `AnsweredBy`. `TimeLimit` counts from the answer.
        """
        await self._sleep(detect_s)
        call.answered_by, call.date_updated = answered_by, _now()
        self._note_greeting_end(call)
        self._status_event(call, CallbackEvent.ANSWERED, CallStatus.IN_PROGRESS)
        self._run_twiml(call, call.twiml)
        talk_s = min(call.talk_s, call.time_limit_s - detect_s)
        await self._sleep(talk_s)
        self._end(call, CallStatus.COMPLETED, round(detect_s + talk_s))

    def _amd(self, call: SimCall) -> tuple[str | None, float]:
        """The `AnsweredBy` AMD reports and the simulated seconds it takes, or (None, 0).

        `MachineDetection=Enable` reports machines as `machine_start`; `DetectMessageEnd`
        waits for the end of the greeting and reports `machine_end_beep|silence|other`.
        """
        mode = (call.machine_detection or "").lower()
        if mode not in ("enable", "detectmessageend"):
            return None, 0.0
        outcome = call.outcome
        if outcome.machine and mode == "enable":
            return Outcome.MACHINE_START.value, self.config.amd_s
        if outcome.machine:
            rng = random.Random(f"{self.config.seed}:{call.index}:greeting")
            result = Outcome.MACHINE_END_OTHER if outcome is Outcome.MACHINE_START else outcome
            return result.value, _sample(rng, self.config.greeting)
        return outcome.value, self.config.amd_s

    def _end(self, call: SimCall, status: CallStatus, duration_s: int) -> None:
        call.status = status
        call.end_time = call.date_updated = _now()
        call.duration_s = duration_s
        self._stats.live -= 1
        self._stats.by_status[status.value] += 1
        if call.script is not None and call.script is not asyncio.current_task():
            call.script.cancel()
        if call.record and status is CallStatus.COMPLETED and duration_s > 0:
            self._recording_event(call, duration_s)
        if CallbackEvent.COMPLETED in call.events:
            self._status_event(
                call,
                CallbackEvent.COMPLETED,
                status,
                {"CallDuration": str(duration_s), "Duration": str(math.ceil(duration_s / 60))},
            )
        if call.held is not None:
            held, call.held = call.held, None
            self._enqueue(call, [held])

    # -- TwiML ------------------------------------------------------------------------------

    def _note(self, call: SimCall, what: str, **details: str) -> None:
        """Add to the call's log, at simulated seconds since its answer."""
        answered = call.answered_monotonic or time.monotonic()
        at_s = (time.monotonic() - answered) / self.config.time_scale
        call.log.append({"at_s": round(at_s, 3), "what": what, **details})

    def _note_greeting_end(self, call: SimCall) -> None:
        """A machine's greeting ended (`DetectMessageEnd`): the beep, silence, or else."""
        ends = {
            Outcome.MACHINE_END_BEEP.value: "beep",
            Outcome.MACHINE_END_SILENCE.value: "silence",
            Outcome.MACHINE_END_OTHER.value: "greeting_end",
        }
        if call.answered_by in ends:
            self._note(call, ends[call.answered_by])

    def _run_twiml(self, call: SimCall, document: str | None) -> None:
        """Start running `document` on the answered call, in place of what ran."""
        if call.script is not None and call.script is not asyncio.current_task():
            call.script.cancel()
        if document is None:
            return
        try:
            verbs = parse_twiml(document)
        except TwimlError as error:
            self._note(call, "twiml_error", error=str(error))
            return
        call.script = self._spawn(self._script(call, verbs))

    async def _script(self, call: SimCall, verbs: list[Verb]) -> None:
        for verb in verbs:
            if call.status.terminal:
                return
            match verb.name:
                case "Say":
                    self._note(call, "say", text=verb.text)
                    await self._sleep(verb.seconds())
                case "Gather":
                    then = await self._gather(call, verb)
                    if then is not None:
                        await self._script(call, then)
                        return
                case "Dial":
                    self._note(call, "dial", number=verb.text)
                case "Hangup":
                    self._note(call, "hangup")
                    self._hang_up_from_twiml(call)
                    return
                case _:
                    self._note(call, verb.name.lower())
                    await self._sleep(verb.seconds())

    async def _gather(self, call: SimCall, gather: Verb) -> list[Verb] | None:
        """Say a `<Gather>`'s prompt, then press the callee's key (or none within its
        `timeout`); with a key, post it to the `action` and return the TwiML it answers
        with (an empty list when the answer is unusable); None: carry on after the Gather."""
        for verb in gather.children:
            if verb.name == "Say":
                self._note(call, "say", text=verb.text)
                await self._sleep(verb.seconds())
        index, call.gathers = call.gathers, call.gathers + 1
        key = self._key(call, index)
        self._note(call, "gather")
        if not key:
            await self._sleep(gather.number("timeout", 5.0))
            self._note(call, "no_key")
            return None
        await self._sleep(self.config.keypress_s)
        self._note(call, "key", digits=key)
        action = gather.attributes.get("action")
        if not action or self._client is None:
            return []
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": CallStatus.IN_PROGRESS.value,
            "Called": call.to,
            "Caller": call.from_,
            "Digits": key,
            "Direction": "outbound-api",
            "FinishedOnKey": "",
            "From": call.from_,
            "To": call.to,
        }
        reply = await fetch_action(
            self._client,
            action,
            params,
            auth_token=self.config.auth_token,
            sign_fragment=self.config.sign_fragment,
            max_bytes=TWIML_MAX_BYTES,
        )
        try:
            return parse_twiml(reply or "")
        except TwimlError as error:
            self._note(call, "action_failed", error=str(error))
            return [Verb("Hangup")]

    def _key(self, call: SimCall, index: int) -> str:
        """The key the callee presses at the call's `index`th Gather ("" for none): the
        number's script, else drawn by `keypress_weights` (people only)."""
        if call.outcome not in (Outcome.HUMAN, Outcome.UNKNOWN):
            return ""
        scripted = self.config.keypresses_by_number.get(call.to)
        if scripted is not None:
            return scripted[index] if index < len(scripted) else ""
        rng = random.Random(f"{self.config.seed}:{call.index}:key:{index}")
        draw = rng.random()
        for key, probability in sorted(self.config.keypress_weights.items()):
            if draw < probability:
                return key
            draw -= probability
        return ""

    def _hang_up_from_twiml(self, call: SimCall) -> None:
        """`<Hangup/>`: the call ends now, completed, its duration the time since answer."""
        if call.status.terminal:
            return
        if call.task is not None:
            call.task.cancel()
        answered = call.answered_monotonic or time.monotonic()
        self._end(
            call,
            CallStatus.COMPLETED,
            round((time.monotonic() - answered) / self.config.time_scale),
        )

    # -- callbacks ---------------------------------------------------------------------------

    def _status_event(
        self,
        call: SimCall,
        event: CallbackEvent,
        call_status: str,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        if call.status_callback is None or event not in call.events:
            return
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": str(call_status),
            "CallbackSource": CALLBACK_SOURCE,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "SequenceNumber": str(call.sequence),
            "Timestamp": rfc2822(_now()) or "",
            "To": call.to,
        }
        if call.answered_by is not None:
            params["AnsweredBy"] = call.answered_by
        params.update(extra or {})
        call.sequence += 1
        token = f"{call.sid}-{params['SequenceNumber']}"
        item = _Callback(call.status_callback, call.status_callback_method, params, token)
        self._dispatch(call, item, terminal=event is CallbackEvent.COMPLETED)

    def _amd_event(self, call: SimCall, amd_s: float) -> None:
        if call.amd_callback is None or call.answered_by is None:
            return
        params = {
            "AccountSid": call.account_sid,
            "AnsweredBy": call.answered_by,
            "CallSid": call.sid,
            "MachineDetectionDuration": str(round(amd_s * 1000)),
        }
        self._dispatch(
            call,
            _Callback(call.amd_callback, call.amd_callback_method, params, f"{call.sid}-amd"),
            terminal=False,
        )

    def _recording_event(self, call: SimCall, duration_s: int) -> None:
        """The `RecordingStatusCallback` of a recorded call that ended (`completed`)."""
        if call.recording_callback is None:
            return
        sid = "RE" + uuid.uuid5(uuid.NAMESPACE_URL, call.sid).hex
        start = call.end_time - timedelta(seconds=duration_s) if call.end_time else None
        params = {
            "AccountSid": call.account_sid,
            "CallSid": call.sid,
            "RecordingSid": sid,
            "RecordingUrl": f"{self.config.recording_base_url}/{API_VERSION}/Accounts/"
            f"{call.account_sid}/Recordings/{sid}",
            "RecordingStatus": "completed",
            "RecordingDuration": str(duration_s),
            "RecordingChannels": "1",
            "RecordingStartTime": rfc2822(start) or "",
            "RecordingSource": "OutboundAPI",
            "RecordingTrack": "both",
        }
        self._note(call, "recording", sid=sid)
        item = _Callback(call.recording_callback, call.recording_callback_method, params, sid)
        self._dispatch(call, item, terminal=False)

    def _dispatch(self, call: SimCall, item: _Callback, *, terminal: bool) -> None:
        """Apply the callback faults, then queue the delivery behind the call's earlier ones."""
        if terminal:
            self._stats.timeline_ends.append(time.monotonic())
        if self.draw_fault(Fault.CALLBACK_LOST):
            return
        copies = 2 if self.draw_fault(Fault.CALLBACK_DUPLICATE) else 1
        if not terminal and call.held is None and self.draw_fault(Fault.CALLBACK_REORDER):
            call.held = item
            return
        items = [item] * copies
        if call.held is not None:
            items.append(call.held)
            call.held = None
        self._enqueue(call, items)

    def _enqueue(self, call: SimCall, items: list[_Callback]) -> None:
        call.chain = self._spawn(self._deliver_after(call.chain, items))

    async def _deliver_after(
        self, previous: asyncio.Task[None] | None, items: list[_Callback]
    ) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        client = self._client
        if client is None:
            return
        stats = self._stats
        for item in items:
            async with self._delivery_slots:
                result = await deliver(
                    client,
                    item.url,
                    item.params,
                    method=item.method,
                    auth_token=self.config.auth_token,
                    sign_fragment=self.config.sign_fragment,
                    idempotency_token=item.token,
                )
            stats.callback_attempts += result.attempts
            if result.ok:
                stats.callbacks_sent += 1
                latency = time.monotonic() - item.queued_at
                stats.callback_latency_sum_s += latency
                stats.callback_latency_max_s = max(stats.callback_latency_max_s, latency)
            else:
                stats.callbacks_failed += 1

    # -- stats -------------------------------------------------------------------------------

    def timeline(self) -> dict[str, Any]:
        """The `GET /_sim/timeline` document: monotonic seconds of every create
        (`creates`) and every terminal callback dispatched (`terminal_callbacks`), and the
        simulator's clock now (`now`), for latency and rate measurements."""
        return {
            "now": time.monotonic(),
            "creates": list(self._stats.timeline_creates),
            "terminal_callbacks": list(self._stats.timeline_ends),
        }

    def stats(self) -> dict[str, Any]:
        """The `GET /_sim/stats` document.

        Keys: create_requests, calls_created, live, max_concurrent (most calls live at once),
        max_cps (most creates in any sliding one-second window), max_dials_per_number,
        numbers_dialed_more_than_once, numbers_dialed, by_status (final statuses),
        rejected_by_code, faults_injected, creates_held (requests held by `slow-before`
        whose call does not exist yet), hang_ups, callbacks_sent (delivered, duplicates
        included), callbacks_failed (given up after retries), callback_attempts,
        callback_latency_mean_ms, callback_latency_max_ms, pending_tasks.
        """
        stats = self._stats
        dials = stats.dials_per_number
        sent = stats.callbacks_sent
        return {
            "create_requests": stats.create_requests,
            "calls_created": stats.calls_created,
            "live": stats.live,
            "max_concurrent": stats.max_concurrent,
            "max_cps": stats.max_cps,
            "max_dials_per_number": max(dials.values(), default=0),
            "numbers_dialed_more_than_once": sum(1 for count in dials.values() if count > 1),
            "numbers_dialed": len(dials),
            "by_status": dict(stats.by_status),
            "rejected_by_code": {str(code): n for code, n in stats.rejected_by_code.items()},
            "faults_injected": dict(stats.faults_injected),
            "creates_held": stats.creates_held,
            "hang_ups": stats.hang_ups,
            "callbacks_sent": sent,
            "callbacks_failed": stats.callbacks_failed,
            "callback_attempts": stats.callback_attempts,
            "callback_latency_mean_ms": round(stats.callback_latency_sum_s / sent * 1000, 3)
            if sent
            else None,
            "callback_latency_max_ms": round(stats.callback_latency_max_s * 1000, 3),
            "pending_tasks": len(self._tasks),
        }


def _int_param(raw: str | None, *, default: int, low: int, high: int) -> int:
    """An integer form value clamped to [low, high] as Twilio clamps `Timeout` and `TimeLimit`.

    Raises:
        ApiError: 400 code 20001 (invalid parameter) when it is not an integer.
    """
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, 20001, f"Invalid parameter value: {raw}") from None
    return min(max(value, low), high)
