"""One typed configuration for every process: the API, the workers, the CLI and the simulator.

Values come from environment variables (upper-case field names) and an optional `.env`
file in the working directory. Secrets that are still placeholders fail loudly at start.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from models.db import PREPARE_THRESHOLD

SIMULATOR_ACCOUNT_SID = "AC" + "0" * 31 + "1"
"""The Twilio account SID the bundled carrier simulator answers to by default (34 chars)."""
SIMULATOR_AUTH_TOKEN = "simulator-auth-token"  # noqa: S105  # the simulator's, public by design
"""The auth token the bundled carrier simulator checks and signs callbacks with by default."""

_PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "xxx", "secret", "todo", "password", "change-this-password"}
)


BROKER_SCHEMES = ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")
"""The Celery brokers the dialer supports: Redis and RabbitMQ (AMQP 0-9-1)."""


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port,...` as `(host, port)` pairs (an IPv6 host in brackets).

    Raises:
        ValueError: an entry without a port, or a port outside 1-65535.
    """
    addresses = []
    for entry in value.split(","):
        host, sep, port = entry.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS entry {entry.strip()!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def without_prepared_statements(database_url: str) -> str:
    """`database_url` with psycopg's automatic prepared statements off
    (`prepare_threshold=none`, read by `models.db.connect_options`)."""
    url = make_url(database_url)
    return url.update_query_dict({PREPARE_THRESHOLD: "none"}).render_as_string(hide_password=False)


class ProviderKind(StrEnum):
    """Which telephony provider places the calls."""

    SIMULATOR = "simulator"
    TWILIO = "twilio"


class LogFormat(StrEnum):
    """How log lines are written (`dialer.logs`)."""

    JSON = "json"
    CONSOLE = "console"


class Settings(BaseSettings):
    """Process configuration.

    Raises:
        pydantic.ValidationError: a URL is malformed, a secret is a placeholder, or
            `PROVIDER=twilio` comes with the simulator's public auth token or a
            `DEV_TIME_SCALE`.
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "postgresql+psycopg://root@127.0.0.1:5432/dialer"
    """PostgreSQL, the record of every contact, attempt and event (SQLAlchemy URL; a
    `postgresql://` URL is read as psycopg 3's)."""
    database_direct_url: str | None = None
    """PostgreSQL without a pooler in between, for migrations (`dialer db upgrade`): set it
    when `DATABASE_URL` goes through PgBouncer in transaction mode, since a migration sets
    session parameters (`lock_timeout`, `statement_timeout`). Unset: `DATABASE_URL`."""
    database_prepared_statements: bool = True
    """Let psycopg prepare statements it runs often (its default). `false` behind PgBouncer
    in transaction mode (PgBouncer before 1.21, or `max_prepared_statements = 0`): a
    statement prepared on one server connection is unknown on the next
    (`prepare_threshold=None`)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis: the pool's leases and CPS limiters, locks, request quotas, page sessions, and
    the Celery broker unless `CELERY_BROKER_URL` names another (run it with
    `maxmemory-policy noeviction`). With `REDIS_SENTINELS` only its db number, user name,
    password and scheme (`rediss://`: TLS) are used; the master's address comes from
    Sentinel."""
    redis_sentinels: str | None = None
    """Sentinels that monitor the Redis master, `host:port,host:port,...`: every Redis
    client of the dialer (and the Celery broker when it is Redis) asks them for the master
    (`REDIS_SENTINEL_MASTER`) and follows it through a failover. Unset: `REDIS_URL`'s host
    is the master."""
    redis_sentinel_master: str = "mymaster"
    """The name under which the Sentinels monitor the master (`sentinel monitor <name>`)."""
    redis_sentinel_password: SecretStr | None = None
    """Password of the Sentinels themselves (their `requirepass`), if they have one; the
    master's own comes from `REDIS_URL`."""
    redis_socket_timeout_s: float = Field(default=5.0, ge=3.0, le=60.0)
    """Longest wait for one Redis reply, in seconds (above the pacer's longest `BLPOP`,
    2 s): past it the command fails with a timeout and is retried on a new connection."""
    redis_connect_timeout_s: float = Field(default=2.0, gt=0, le=30.0)
    """Longest wait for a TCP connection to Redis or a Sentinel, in seconds."""
    redis_retries: int = Field(default=10, ge=0, le=100)
    """Tries again of one Redis command after a connection error, a timeout, a
    `READONLY` reply (a master turned replica) or no master known to the Sentinels, with
    exponential backoff and full jitter (0.1 s doubling, at most 2 s a wait: about 10 s in
    all with the default, more than a Sentinel failover takes with
    `down-after-milliseconds 5000`). Each try is logged (`redis_retry`) and counted
    (`dialer_redis_retries_total`)."""
    celery_broker_url: str | None = None
    """The Celery broker: `redis://`/`rediss://` or `amqp://`/`amqps://` (RabbitMQ: quorum
    queues and publisher confirms, see `workers.app`). Unset: `REDIS_URL`, through the
    Sentinels when `REDIS_SENTINELS` is set (a Redis broker URL given here is used as it is,
    without Sentinel)."""
    public_base_url: str = "http://127.0.0.1:8000"
    """Base URL at which the provider reaches our webhooks; signatures are checked against it."""

    provider: ProviderKind | None = None
    """`simulator` unless Twilio credentials are given and no simulator base URL is set."""
    twilio_account_sid: str = SIMULATOR_ACCOUNT_SID
    """The provider account's SID (`AC...`; default: the simulator's)."""
    twilio_auth_token: SecretStr = SecretStr(SIMULATOR_AUTH_TOKEN)
    """The provider account's auth token: authenticates our requests and checks the
    signatures of its status callbacks (default: the simulator's public one, refused with
    `PROVIDER=twilio`)."""
    twilio_base_url: str | None = None
    """Scheme and host that replace `https://api.twilio.com` (the simulator's URL)."""
    twilio_timeout_s: float = Field(default=10.0, gt=0)
    """HTTP timeout of one provider request, in seconds (the SDK's default is none)."""

    simulator_host: str = "127.0.0.1"
    """Where `dialer simulator` listens, and the provider's host when no
    `TWILIO_BASE_URL` is set and the provider is the simulator."""
    simulator_port: int = 8765
    """The simulator's port (see `SIMULATOR_HOST`)."""

    session_secret: SecretStr | None = None
    """Signs the campaign page's session cookies (`/login`): 32 or more random characters
    (`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), the same in every API
    process. Unset: the page's sign-in answers 503 `session_secret_missing`; the /v1 API
    does not use it."""

    flower_user: str = "admin"
    """User name of Flower's basic authentication (`dialer flower`)."""
    flower_password: SecretStr | None = None
    """Required by `dialer flower`: the dashboard shows every task's arguments. It reaches
    Flower in its environment (`FLOWER_BASIC_AUTH`), never on its command line."""
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)
    """Port on which each Celery worker serves its Prometheus metrics (0: none)."""
    worker_metrics_host: str = "127.0.0.1"
    """Address each Celery worker's metrics server binds: loopback by default (the metrics
    name every tenant's ids); `0.0.0.0` for a Prometheus on another host, behind a
    firewall."""
    metrics_token: SecretStr | None = None
    """Bearer token Prometheus sends to scrape the API's `/metrics` (32 or more
    characters). Unset: `/metrics` answers 404 on the API's port, since it lists every
    tenant's ids, caps and live calls."""

    stuck_dialing_after_s: float = Field(default=30.0, gt=0)
    """An attempt still `dialing` or `placing` after this many seconds has lost its task:
    the reaper re-dispatches or resolves it."""
    send_wait_s: float = Field(default=1.0, gt=0, le=30)
    """Longest a dial waits for its send-time CPS slot, in seconds: the attempt's send
    deadline is `placing` + this. A dial that cannot leave by then goes back to the pacer,
    so no create leaves late (after a pause, or past a reaper that gave it up)."""
    ambiguous_redial_after_s: float = Field(default=60.0, ge=0)
    """Seconds a contact whose create was ambiguous (timeout, 5xx) and not found is left
    alone, so a request the provider processes late finds the contact still waiting and is
    adopted rather than followed by a second call (`ambiguous_redial_wait_s`)."""
    status_poll_after_s: float = Field(default=120.0, gt=0)
    """A live call with no callback for this many seconds is fetched from the provider
    (callbacks can be lost); a terminal status found there is applied
    (`status_poll_wait_s`)."""
    dev_time_scale: float = Field(default=1.0, gt=0, le=1)
    """Development only, with `PROVIDER=simulator` (refused with `twilio`): multiplies the
    waits that stand for the provider's or the callee's time, to match the simulator's
    `--time-scale` (0.01: a 3600 s no-answer retry is due after 36 s). Scaled: every retry
    delay of every campaign (the retry matrix), the backoff between create tries, the
    ambiguous-create wait (never below `twilio_timeout_s`, the real time a late create may
    still land in) and the status poll (never below 2 s). Not scaled: calling windows,
    frequency caps, `start_at`/`end_at`, and `stuck_dialing_after_s` and `send_wait_s`,
    which measure our own workers in real time."""

    webhook_allow_private_networks: bool = False
    """Let customer webhooks reach loopback, private and link-local addresses (development
    and tests only; see `dialer.webhook_url`)."""
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    """Longest one try to a customer's webhook may take in all, in seconds: connect, TLS,
    sending, the answer's headers and the bounded read of its body (a receiver that drips a
    byte at a time is cut off); past it the try failed and is retried."""
    webhook_retry_base_s: float = Field(default=8.0, gt=0)
    """Cap of the first retry's delay, in seconds; try n waits a random time up to
    `base * 2**(n-1)` (exponential backoff with full jitter), at most `webhook_retry_cap_s`.
    With beat's 2 s sweep the first retry leaves within 10 s."""
    webhook_retry_cap_s: float = Field(default=4 * 3600.0, gt=0)
    """Longest wait between two tries of one event, seconds."""
    webhook_max_attempts: int = Field(default=20, ge=1)
    """Tries before an event is dead-lettered (fewer if `webhook_retry_window_s` ends first;
    the first ten always fit in the window with the defaults)."""
    webhook_retry_window_s: float = Field(default=24 * 3600.0, gt=0)
    """No try is scheduled later than this many seconds after the event was written."""
    webhook_concurrency: int = Field(default=8, ge=1)
    """Deliveries one sweep sends at once, so a slow receiver holds up at most one slot."""
    webhook_account_concurrency: int = Field(default=2, ge=1)
    """Deliveries of one account in flight at once across every webhook worker (a Redis
    semaphore); more are deferred, not failed. Keep it below the webhook workers'
    concurrency so one account's slow receiver never holds them all (`Procfile`: 4)."""
    schedule_tick_s: float = Field(default=5.0, gt=0, le=60)
    """Seconds between two beat ticks that fire due schedules (a minute-by-minute schedule
    fires within this of its occurrence)."""

    body_max_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest request body the API reads, in bytes, for every request but uploads (JSON
    bodies, the provider callbacks, page forms); past it the reply is 413
    `body_too_large` and nothing more is read."""
    upload_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    """Largest upload the API reads, in bytes: the body of `POST /v1/campaigns` and
    `/v1/dnc/import` (spooled to disk as it is read; contacts pushed to a schedule are read
    in memory and bounded at 10 MiB, `campaigns.schedules.MAX_PUSHED_BYTES`). The default
    is ingest's own bound on a CSV (`campaigns.ingest.create_campaign`'s `max_bytes`, 422
    `too_large`)."""
    rate_limit_per_s: float = Field(default=50.0, gt=0)
    """Requests per second one API key may make, sustained (GCRA in Redis); past it the
    reply is 429 `rate_limited` with `Retry-After`."""
    rate_limit_burst: int = Field(default=200, ge=1)
    """Requests one API key may make at once above its sustained rate."""
    max_waiters_per_account: int = Field(default=20, ge=0)
    """Most `POST /v1/calls` requests with `wait` one account may hold open at once; one
    more is refused at once (429 `too_many_waiters`, `Retry-After`) and places nothing."""
    account_max_concurrency_ceiling: int = Field(default=100, ge=1)
    """Most an account's `max_concurrency` (live calls) may be unless the installation's
    operator set the account its own ceiling (`dialer accounts set --max-concurrency-ceiling`):
    a tenant may lower its caps through the API, never raise them past the ceiling."""
    account_cps_ceiling: float = Field(default=10.0, gt=0)
    """Most an account's `cps` (calls per second) may be unless the operator set the account
    its own ceiling (`dialer accounts set --cps-ceiling`)."""
    provider_max_concurrency: int | None = Field(default=None, ge=1)
    """Most calls live at once across every account: what the provider granted the one
    provider account all tenants share (a scope of the pool above the accounts). Unset: no
    bound beyond the accounts' own caps."""
    provider_max_cps: float | None = Field(default=None, gt=0)
    """Most calls per second created across every account: the provider account's CPS
    (Twilio counts it per provider account; its default is 1). Unset: no bound beyond the
    accounts' own CPS."""

    log_level: str = "INFO"
    """Level of the API's, beat's and the services' logs (`DEBUG`, `INFO`, `WARNING`, ...);
    the CLI's other commands log at WARNING unless it is set."""
    log_format: LogFormat | None = None
    """`json` or `console`; unset: JSON unless stderr is a terminal (`dialer.logs`)."""
    data_dir: Path = Path("var")
    """Where rejected-rows CSVs and other files the dialer writes are kept."""

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _database_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Normalise to the psycopg 3 driver: `postgresql://` and `postgres://` would pick psycopg2.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @field_validator("celery_broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None  # set but empty (a compose file's `${CELERY_BROKER_URL:-}`): unset
        if not value.startswith(BROKER_SCHEMES):
            raise ValueError(
                "CELERY_BROKER_URL must start with " + ", ".join(BROKER_SCHEMES) + " (a URL)"
            )
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_sentinels(value)
        return value

    @field_validator("public_base_url", "twilio_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("flower_password")
    @classmethod
    def _real_flower_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().lower() in _PLACEHOLDERS:
            raise ValueError("FLOWER_PASSWORD is a placeholder; set a real password")
        return value

    @field_validator("session_secret")
    @classmethod
    def _real_session_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if secret.lower() in _PLACEHOLDERS or len(secret) < 32:
                raise ValueError("SESSION_SECRET is a placeholder or shorter than 32 characters")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _real_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            token = value.get_secret_value()
            if token.lower() in _PLACEHOLDERS or len(token) < 32:
                raise ValueError("METRICS_TOKEN is a placeholder or shorter than 32 characters")
        return value

    @model_validator(mode="after")
    def _choose_provider(self) -> Settings:
        if self.twilio_auth_token.get_secret_value().lower() in _PLACEHOLDERS:
            raise ValueError("TWILIO_AUTH_TOKEN is a placeholder; set the real token")
        if self.provider is None:
            real_credentials = self.twilio_account_sid != SIMULATOR_ACCOUNT_SID
            self.provider = (
                ProviderKind.TWILIO
                if real_credentials and not self.twilio_base_url
                else ProviderKind.SIMULATOR
            )
        if (
            self.provider is ProviderKind.TWILIO
            and self.twilio_auth_token.get_secret_value() == SIMULATOR_AUTH_TOKEN
        ):
            # The simulator's token is public: callbacks signed with it prove nothing.
            raise ValueError(
                "PROVIDER=twilio with the simulator's public auth token; set TWILIO_AUTH_TOKEN"
            )
        if self.provider is ProviderKind.TWILIO and self.dev_time_scale != 1.0:
            # Real people would be re-dialled seconds after a no-answer.
            raise ValueError("DEV_TIME_SCALE is for the simulator only; unset it with twilio")
        if not self.database_prepared_statements:
            self.database_url = without_prepared_statements(self.database_url)
        if self.provider is ProviderKind.SIMULATOR and not self.twilio_base_url:
            self.twilio_base_url = f"http://{self.simulator_host}:{self.simulator_port}"
        return self

    @property
    def migration_url(self) -> str:
        """The URL migrations connect to: `DATABASE_DIRECT_URL`, else `DATABASE_URL`."""
        return self.database_direct_url or self.database_url

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """`REDIS_SENTINELS` as `(host, port)` pairs; empty when unset."""
        return parse_sentinels(self.redis_sentinels) if self.redis_sentinels else []

    @property
    def broker_url(self) -> str:
        """`CELERY_BROKER_URL`, else `REDIS_URL` (see `workers.app` for Sentinel)."""
        return self.celery_broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        """The Celery broker is RabbitMQ (`amqp://`, `amqps://`)."""
        return self.broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))

    @property
    def ambiguous_redial_wait_s(self) -> float:
        """`ambiguous_redial_after_s` times `dev_time_scale`, never below `twilio_timeout_s`
        (nor above the setting): the wait after an ambiguous create, in seconds."""
        floor = min(self.ambiguous_redial_after_s, self.twilio_timeout_s)
        return max(self.ambiguous_redial_after_s * self.dev_time_scale, floor)

    @property
    def status_poll_wait_s(self) -> float:
        """`status_poll_after_s` times `dev_time_scale`, never below 2 s (nor above the
        setting): how long a live call may stay quiet before it is fetched, in seconds."""
        floor = min(self.status_poll_after_s, 2.0)
        return max(self.status_poll_after_s * self.dev_time_scale, floor)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
