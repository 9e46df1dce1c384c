"""Configuration of the carrier simulator: credentials, time scale, seed, limits, outcomes, faults.

Durations are in *simulated* seconds and are multiplied by `time_scale` before the simulator
sleeps (0.01 turns a 60 s call into 0.6 s of wall time); the durations it reports
(`duration`, `CallDuration`) stay in simulated seconds. Rates (`cps_limit`) and
`slow_delay_s` are in real (wall-clock) seconds, like the client timeouts they exercise.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_ACCOUNT_SID = "AC" + "0" * 31 + "1"
"""The Twilio account SID the simulator answers to by default (34 characters). The dialer's
settings default to the same value (`dialer.settings.SIMULATOR_ACCOUNT_SID`); the simulator
imports nothing of the dialer, so the value is written in both and a test checks they agree."""
DEFAULT_AUTH_TOKEN = "simulator-auth-token"  # noqa: S105  # public by design
"""The auth token the simulator checks and signs callbacks with by default."""
KEYS = frozenset("0123456789*#")
"""The keys of a phone keypad."""
MAGIC_TEST_NUMBER = "+15005550006"
"""Twilio's magic test number, a valid `From` for test credentials; owned by default."""


class Fault(StrEnum):
    """Faults the simulator injects, each with a probability in [0, 1]."""

    BEFORE_502 = "502-before"
    """Reply 502 and create nothing."""
    AFTER_502 = "502-after"
    """Create the call (it lives its life) but reply 502: the ambiguous case."""
    THROTTLE_429 = "429"
    """Reply 429 with Twilio code 20429 and create nothing."""
    SLOW = "slow"
    """Create the call at once but hold the reply for `slow_delay_s` real seconds: the call
    exists (and rings) while the client still waits, or after it gave up."""
    SLOW_BEFORE = "slow-before"
    """Hold the request `slow_delay_s` real seconds *before* creating the call, like a request
    the carrier processes after the client gave up: until then a list finds no call; then
    the call is created and lives its life (callbacks included) whether or not the client
    is still there, and the reply (if anyone reads it) follows."""
    CALLBACK_LOST = "callback-lost"
    """Never deliver a callback."""
    CALLBACK_DUPLICATE = "callback-duplicate"
    """Deliver a callback twice."""
    CALLBACK_REORDER = "callback-reorder"
    """Hold a callback back and deliver it after the call's next one."""


class Outcome(StrEnum):
    """How the callee's side of a call goes. Answered outcomes use Twilio's `AnsweredBy` values."""

    HUMAN = "human"
    MACHINE_START = "machine_start"
    MACHINE_END_BEEP = "machine_end_beep"
    MACHINE_END_SILENCE = "machine_end_silence"
    MACHINE_END_OTHER = "machine_end_other"
    FAX = "fax"
    UNKNOWN = "unknown"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"

    @property
    def answered(self) -> bool:
        """True when somebody (or something) picks up."""
        return self not in (Outcome.BUSY, Outcome.NO_ANSWER, Outcome.FAILED)

    @property
    def machine(self) -> bool:
        """True for an answering machine outcome."""
        return self.value.startswith("machine_")


DEFAULT_OUTCOME_WEIGHTS: dict[Outcome, float] = {
    Outcome.HUMAN: 0.60,
    Outcome.MACHINE_START: 0.02,
    Outcome.MACHINE_END_BEEP: 0.08,
    Outcome.MACHINE_END_SILENCE: 0.03,
    Outcome.MACHINE_END_OTHER: 0.02,
    Outcome.BUSY: 0.08,
    Outcome.NO_ANSWER: 0.12,
    Outcome.FAILED: 0.05,
}
"""About 60 % human, 15 % machine, 8 % busy, 12 % no-answer, 5 % failed."""


class LogNormal(BaseModel):
    """A log-normal duration in simulated seconds, clipped to [minimum_s, maximum_s].

    `median_s` is exp(mu); `sigma` is the standard deviation of the log.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    median_s: float = Field(gt=0)
    sigma: float = Field(default=0.5, ge=0)
    minimum_s: float = Field(default=0.0, ge=0)
    maximum_s: float = Field(default=3600.0, gt=0)


class SimulatorConfig(BaseModel):
    """Everything the simulator can be told; all of it except the credentials and the seed can
    change at run time through `POST /_sim/config`.

    Attributes:
        account_sid, auth_token: the Basic-auth credentials the REST API accepts; the token also
            signs callbacks (`X-Twilio-Signature`).
        time_scale: wall seconds per simulated second (0.01: a 60 s call takes 0.6 s).
        seed: seeds the per-call RNG (seed + call index) and the fault RNG: same seed and
            same request order, same outcomes and faults.
        faults: `Fault` name -> probability in [0, 1].
        cps_limit: account calls per second (real seconds) leaving the queue; excess calls are
            created `queued` and initiated at that rate, as Twilio queues them. None: no limit.
        concurrency_limit: most live calls (created, not ended); a create beyond it is refused
            with HTTP 429 and Twilio code 10004 (call concurrency limit exceeded). None: no limit.
        outcome_weights: relative weights of the outcomes of calls not forced per number.
        outcomes_by_number: E.164 -> forced outcome for calls to that number (tests).
        talk_seconds_by_number: E.164 -> forced talk length in simulated seconds.
        ring: time a call rings before it is answered (simulated seconds).
        talk: length of an answered call (simulated seconds), before `TimeLimit`.
        setup_s: simulated seconds from initiated to ringing, and from initiated to a
            `failed` or `busy` end.
        amd_s: simulated seconds AMD takes to decide `human` / `machine_start`; the
            `machine_end_*` results come after the greeting (`greeting`).
        greeting: length of an answering machine's greeting, in simulated seconds.
        slow_delay_s: real seconds a `slow` reply is held, and a `slow-before` request is
            held before its call is created.
        sign_fragment: sign callbacks over the URL including its `#...` connection-override
            fragment (the URL exactly as given); False signs the URL without it.
        callback_max_connections: size of the callback HTTP connection pool.
        owned_numbers: E.164 numbers the account owns (`GET IncomingPhoneNumbers.json`);
            by default Twilio's magic test number +15005550006.
        verified_caller_ids: E.164 numbers the account verified as caller IDs
            (`GET OutgoingCallerIds.json`).
        keypress_weights: key -> probability that a person (`human`, `unknown` answers)
            presses it at a `<Gather>` (drawn per Gather from the call's seeded RNG; the
            rest of the probability presses nothing). Empty: nobody presses a key.
        keypresses_by_number: E.164 -> the keys its callee presses, one per `<Gather>` in
            order ("" presses nothing); past the list, nothing (tests).
        keypress_s: simulated seconds after a `<Gather>`'s prompt ends before its key.
        recording_base_url: where the simulated recordings live (`RecordingUrl` is
            `{recording_base_url}/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    account_sid: str = Field(default=DEFAULT_ACCOUNT_SID, pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: str = DEFAULT_AUTH_TOKEN
    time_scale: float = Field(default=1.0, gt=0)
    seed: int = 0
    faults: dict[Fault, float] = Field(default_factory=dict)
    cps_limit: float | None = Field(default=None, gt=0)
    concurrency_limit: int | None = Field(default=None, ge=1)
    outcome_weights: dict[Outcome, float] = Field(
        default_factory=lambda: dict(DEFAULT_OUTCOME_WEIGHTS)
    )
    outcomes_by_number: dict[str, Outcome] = Field(default_factory=dict)
    talk_seconds_by_number: dict[str, float] = Field(default_factory=dict)
    ring: LogNormal = LogNormal(median_s=6.0, sigma=0.5, minimum_s=1.0, maximum_s=60.0)
    talk: LogNormal = LogNormal(median_s=40.0, sigma=0.6, minimum_s=3.0, maximum_s=1800.0)
    setup_s: float = Field(default=1.0, ge=0)
    amd_s: float = Field(default=3.0, ge=0)
    greeting: LogNormal = LogNormal(median_s=12.0, sigma=0.3, minimum_s=4.0, maximum_s=30.0)
    slow_delay_s: float = Field(default=30.0, ge=0)
    sign_fragment: bool = True
    callback_max_connections: int = Field(default=200, ge=1)
    owned_numbers: list[str] = Field(default_factory=lambda: [MAGIC_TEST_NUMBER])
    verified_caller_ids: list[str] = Field(default_factory=list)
    keypress_weights: dict[str, float] = Field(default_factory=dict)
    keypresses_by_number: dict[str, list[str]] = Field(default_factory=dict)
    keypress_s: float = Field(default=2.0, ge=0)
    recording_base_url: str = "https://api.twilio.com"

    @field_validator("keypress_weights")
    @classmethod
    def _keypresses(cls, value: dict[str, float]) -> dict[str, float]:
        if any(key not in KEYS for key in value):
            raise ValueError("keypress_weights keys are phone keys: 0-9, * or #")
        if any(weight < 0 for weight in value.values()) or sum(value.values()) > 1.0 + 1e-9:
            raise ValueError("keypress probabilities must be >= 0 and add up to at most 1")
        return value

    @field_validator("faults")
    @classmethod
    def _probabilities(cls, value: dict[Fault, float]) -> dict[Fault, float]:
        for name, probability in value.items():
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"fault {name.value}: probability {probability} not in [0, 1]")
        return value

    @field_validator("outcome_weights")
    @classmethod
    def _weights(cls, value: dict[Outcome, float]) -> dict[Outcome, float]:
        if any(weight < 0 for weight in value.values()) or sum(value.values()) <= 0:
            raise ValueError("outcome weights must be >= 0 with a positive sum")
        return value

    @model_validator(mode="after")
    def _talk_seconds(self) -> SimulatorConfig:
        if any(seconds < 0 for seconds in self.talk_seconds_by_number.values()):
            raise ValueError("talk_seconds_by_number values must be >= 0")
        return self

    def fault_probability(self, fault: Fault) -> float:
        """The probability of `fault` (0 when unset)."""
        return self.faults.get(fault, 0.0)


MERGED = ("faults", "outcomes_by_number", "talk_seconds_by_number", "keypresses_by_number")
"""The mappings an update merges key by key."""


class SimulatorConfigUpdate(BaseModel):
    """A partial update for `POST /_sim/config`. `faults`, `outcomes_by_number` and
    `talk_seconds_by_number` and `keypresses_by_number` are merged key by key into the current
    ones; other fields replace.
    Credentials and the seed cannot change at run time."""

    model_config = ConfigDict(extra="forbid")

    time_scale: float | None = None
    faults: dict[Fault, float] | None = None
    cps_limit: float | None = None
    concurrency_limit: int | None = None
    outcome_weights: dict[Outcome, float] | None = None
    outcomes_by_number: dict[str, Outcome] | None = None
    talk_seconds_by_number: dict[str, float] | None = None
    ring: LogNormal | None = None
    talk: LogNormal | None = None
    setup_s: float | None = None
    amd_s: float | None = None
    greeting: LogNormal | None = None
    slow_delay_s: float | None = None
    sign_fragment: bool | None = None
    owned_numbers: list[str] | None = None
    verified_caller_ids: list[str] | None = None
    keypress_weights: dict[str, float] | None = None
    keypresses_by_number: dict[str, list[str]] | None = None
    keypress_s: float | None = None

    def apply(self, config: SimulatorConfig) -> SimulatorConfig:
        """A new validated config: `config` with this update applied.

        Raises:
            pydantic.ValidationError: the result is not a valid `SimulatorConfig`.
        """
        merged: dict[str, Any] = config.model_dump()
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name in MERGED:
                merged[name] = {**merged[name], **(value or {})}
            elif isinstance(value, BaseModel):
                merged[name] = value.model_dump()
            else:
                merged[name] = value
        return SimulatorConfig.model_validate(merged)


def parse_faults(items: list[str]) -> dict[str, float]:
    """Parse `NAME=P` strings (e.g. `["502-after=0.1", "callback-lost=0.05"]`) into a dict.

    NAME is a `Fault` value; P a probability in [0, 1]. A later item overrides an earlier one.

    Raises:
        ValueError: an item lacks `=`, names an unknown fault, or P is not a number in [0, 1].
    """
    known = ", ".join(fault.value for fault in Fault)
    faults: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise ValueError(f"fault {item!r}: expected NAME=PROBABILITY, e.g. 502-after=0.1")
        if name not in {fault.value for fault in Fault}:
            raise ValueError(f"fault {item!r}: unknown fault {name!r}; known: {known}")
        try:
            probability = float(raw)
        except ValueError:
            raise ValueError(f"fault {item!r}: {raw!r} is not a number") from None
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"fault {item!r}: probability {probability} not in [0, 1]")
        faults[name] = probability
    return faults
