"""Celery's logging and the worker's metrics, hooked to Celery's signals.

- `setup_logging`: Celery leaves logging alone when this signal has a receiver; ours
  configures `dialer.logs` at the level given to Celery (`--loglevel`), so Celery's own
  lines and ours come out once, through structlog, with their levels (the app also turns
  off `worker_redirect_stdouts`, which logged every printed line again as a warning).
- `worker_ready` (the worker's main process, once its pool runs): serve the metrics of the
  whole worker, its prefork children included (`dialer.metrics`, multiprocess mode), on
  `WORKER_METRICS_HOST`:`WORKER_METRICS_PORT` (loopback by default; port 0: not served).
  A taken port is logged, not fatal: the worker dials all the same.
- `worker_process_shutdown` (a pool child exiting): drop its live gauges from the tree's
  metrics directory (`prometheus_client.multiprocess.mark_process_dead`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import structlog
from celery import signals

from dialer import metrics
from dialer.logs import configure_logging
from dialer.settings import get_settings

log = structlog.get_logger(__name__)


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    configure_logging(level=level or None)


@signals.worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    settings = get_settings()
    port, host = settings.worker_metrics_port, settings.worker_metrics_host
    if not port:
        return
    try:
        metrics.serve(port, host)
    except OSError as error:
        log.error(
            "worker_metrics_unavailable",
            host=host,
            port=port,
            error=str(error),
            hint="another worker on this machine may serve its metrics there: start this one "
            "with WORKER_METRICS_PORT set to a free port, or 0 to serve none",
        )
        return
    log.info("worker_metrics_serving", host=host, port=port)


@signals.worker_process_shutdown.connect
def _mark_dead(pid: int | None = None, **_: Any) -> None:
    metrics.mark_process_dead(pid or os.getpid())
