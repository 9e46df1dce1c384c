"""Every Prometheus metric of the dialer, in one place, multiprocess-safe.

The API runs several uvicorn worker processes and a Celery worker runs a prefork pool, so
each process writes its samples to files in one directory per process tree
(prometheus-client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`) and whoever serves
`/metrics` adds them up (`aggregate`). The directory is decided when this module is first
imported, before prometheus-client is (it reads the variable at import):

- `PROMETHEUS_MULTIPROC_DIR` set: this process belongs to a tree whose root made it (a
  uvicorn worker under `dialer api`, a pool child of a Celery worker), or the operator gave
  one directory to one process tree (e.g. one `uvicorn --workers N`); it is used as it is.
- unset: this process is a tree's root. It makes a fresh private directory
  (`<tmp>/dialer-metrics-<uid>/<pid>-*`), exports it for its children, removes it at exit,
  and first removes the directories of roots that died without cleaning up (SIGKILL).
  Counters of dead children stay in the directory (their counts are not lost);
  `mark_process_dead` drops a dead child's live gauges.

A launcher that starts *other* trees (`dialer.cli.devstack.child`) removes the variable
from their environment, so two trees never share a directory.

Metric names follow Prometheus conventions (counters end in `_total` when exposed, times
in seconds). The pool's leases and caps are read from Redis and PostgreSQL at scrape time
(`dialer.pool.gauges.PoolCollector`, served by the API).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_own(path: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked child that inherited the handler
        shutil.rmtree(path, ignore_errors=True)


def ensure_multiprocess_dir() -> str:
    """This process tree's metrics directory (made and exported if unset; see module doc).

    Idempotent: the first call decides, later ones return the same path.
    """
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        Path(existing).mkdir(parents=True, exist_ok=True)
        return existing
    base = Path(tempfile.gettempdir()) / f"dialer-metrics-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    for stale in base.iterdir():
        pid = stale.name.partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    path = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base)
    os.environ[MULTIPROC_ENV] = path
    atexit.register(_remove_own, path, os.getpid())
    return path


ensure_multiprocess_dir()

# prometheus-client reads PROMETHEUS_MULTIPROC_DIR when imported: after the call above.
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.registry import Collector  # noqa: E402

if values.ValueClass is values.MutexValue:
    # Something imported prometheus-client before the directory was set (Flower does, a
    # test module may): the metrics below are file-backed all the same.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]

__all__ = ["CONTENT_TYPE_LATEST", "aggregate", "exposition", "serve"]

# Tasks (workers.base.DialerTask).
TASKS = Counter(
    "dialer_tasks",
    "Celery task runs by task name and state (started, succeeded, not_found, retried, failed)",
    ["task", "state"],
)

# Dialling.
DIALS = Counter(
    "dialer_dials",
    "place_call runs by result (placed, adopted, retry_later, rejected, do_not_call, "
    "breaker_tripped, skipped, stopped, failed, late): `placed` is a call created",
    ["result"],
)
PROVIDER_CREATES = Counter(
    "dialer_provider_creates",
    "Create-call requests to the provider by result (created, ambiguous, throttled, "
    "rejected, account_error, not_found, error)",
    ["result"],
)
PROVIDER_ERRORS = Counter(
    "dialer_provider_errors",
    "Provider errors by operation (create, fetch, list, update), kind and provider error "
    "code (Twilio error dictionary; `none` when no reply came)",
    ["operation", "kind", "code"],
)
BREAKER_TRIPS = Counter(
    "dialer_breaker_trips",
    "Circuit breaker trips (an account-level provider error paused the account's "
    "campaigns), by provider error code",
    ["code"],
)

# The pacer.
PACER_ROUNDS = Counter(
    "dialer_pacer_rounds",
    "Pacer dispatch rounds by result (dialled: at least one dial sent; idle)",
    ["result"],
)
DIALS_DISPATCHED = Counter(
    "dialer_dials_dispatched", "Attempts the pacer leased a slot for and sent to place_call"
)
DUE_TO_DIAL_SECONDS = Histogram(
    "dialer_due_to_dial_seconds",
    "From the moment a contact was due (or its campaign started) to the moment the pacer "
    "claimed it for a dial",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)

# Provider callbacks (the API's webhooks).
CALLBACKS = Counter(
    "dialer_provider_callbacks",
    "Provider callbacks by kind (status, amd, gather) and result (stored, duplicate, forged)",
    ["kind", "result"],
)
CALLBACK_APPLY_FAILURES = Counter(
    "dialer_provider_callback_apply_failures",
    "Stored provider callbacks the call state machine failed to apply (a bug or stored data "
    "no check holds any more, logged with its traceback); the callback is answered and its "
    "call is applied again when the reaper asks the provider",
)
CALLBACK_SECONDS = Histogram("dialer_provider_callback_seconds", "Callback handling time")
CALLBACK_BATCH_SIZE = Histogram(
    "dialer_provider_callback_batch_size",
    "Callbacks applied per transaction by an API process's callback batcher (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
CALLBACK_LAG_SECONDS = Histogram(
    "dialer_callback_lag_seconds",
    "From the provider's event `Timestamp` (one-second precision) to the event stored and "
    "applied, by callback kind",
    ["kind"],
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 1800),
)

# Ingest and webhooks.
INGEST_ROWS = Counter(
    "dialer_ingest_rows",
    "Campaign CSV rows by result: accepted, or the reject reason code",
    ["result"],
)
WEBHOOK_DELIVERIES = Counter(
    "dialer_webhook_deliveries",
    "Webhook delivery tries by result: delivered, retry (another is due), failed (410), dead;"
    " deferred (the account's deliveries were all in flight: not a try)",
    ["result"],
)

# The parts the dialer talks to.
REDIS_RETRIES = Counter(
    "dialer_redis_retries",
    "Redis commands tried again after a connection error, a timeout, a READONLY reply or no "
    "master known to the Sentinels, by error class and outcome (retried; gave_up: the "
    "error reached the caller)",
    ["error", "outcome"],
)


_LAG_BY_KIND: dict[str, Histogram] = {}
"""The lag histogram's child per callback kind, looked up once (the webhook is a hot path)."""


def observe_callback_lag(kind: str, timestamp: str | None) -> None:
    """Record one applied callback's lag from its `Timestamp` (RFC 2822; absent or
    malformed: nothing recorded)."""
    if not timestamp:
        return
    try:
        sent = parsedate_to_datetime(timestamp)
    except (TypeError, ValueError):
        return
    lag = (datetime.now(UTC) - sent).total_seconds()
    child = _LAG_BY_KIND.get(kind) or _LAG_BY_KIND.setdefault(
        kind, CALLBACK_LAG_SECONDS.labels(kind)
    )
    child.observe(max(0.0, lag))


def observe_due_to_dial(due: datetime, started: datetime | None) -> None:
    """Record one contact's delay, in seconds, from the moment it was due (`next_due_at`;
    for a contact loaded before its campaign started, the start) to now, when the pacer
    claims it for a dial."""
    since = max(due, started) if started is not None else due
    DUE_TO_DIAL_SECONDS.observe(max(0.0, (datetime.now(UTC) - since).total_seconds()))


def count_ingest(accepted: int, rejected: dict[str, int]) -> None:
    """Count one ingest's rows: `accepted`, and each reject reason's count."""
    INGEST_ROWS.labels("accepted").inc(accepted)
    for reason, n in rejected.items():
        INGEST_ROWS.labels(reason).inc(n)


def aggregate(*collectors: Collector) -> CollectorRegistry:
    """A registry of every process of this tree (the multiprocess files) plus `collectors`."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for collector in collectors:
        registry.register(collector)
    return registry


def exposition(*collectors: Collector) -> bytes:
    """The tree's metrics (and `collectors`'), in the Prometheus text format."""
    return generate_latest(aggregate(*collectors))


def serve(port: int, addr: str) -> None:
    """Serve the tree's metrics over HTTP on `addr`:`port` from a daemon thread of this
    process (`settings.worker_metrics_host`: loopback unless the operator opens it).

    Raises:
        OSError: the port is taken.
    """
    start_http_server(port, addr, registry=aggregate())


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges from the tree's directory (counters stay)."""
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
