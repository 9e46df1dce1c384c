"""The one logging configuration of every process: the API, the Celery workers and beat,
the CLI.

structlog renders every line, its own and the standard library's (Celery, uvicorn,
SQLAlchemy, ...), through one handler on the root logger (structlog's
`ProcessorFormatter`), on stderr:

- `LOG_FORMAT=json`: one JSON object per line (`timestamp`, `level`, `logger`, `event`,
  and the bound context); the default when stderr is not a terminal;
- `LOG_FORMAT=console`: structlog's coloured console lines; the default on a terminal.

Context bound with `structlog.contextvars` (task, attempt, campaign and account ids in
`workers.base.DialerTask`, request id and account in the API's middleware) is on every
line, the standard library's included. Levels are kept: Celery's `info` stays `info`.

The entry points call `configure_logging` once (the API's `asgi` module, the CLI's `main`,
Celery's `setup_logging` signal); the first call in a process wins, later ones change
nothing, so a test that captures structlog's output keeps it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import Processor

from dialer.settings import LogFormat, Settings, get_settings

_configured = False

_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")
"""Loggers that their library may have given handlers: they go through the root's."""


def _renderer(fmt: LogFormat) -> Processor:
    if fmt is LogFormat.JSON:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


def configure_logging(settings: Settings | None = None, level: str | None = None) -> None:
    """Configure structlog and the standard library's root logger for this process, at
    `level` (DEBUG, INFO, WARNING, ERROR; default `LOG_LEVEL`) in `LOG_FORMAT`.

    Only the first call in a process does anything (see the module docstring).
    """
    global _configured
    if _configured:
        return
    _configured = True
    settings = settings or get_settings()
    names = logging.getLevelNamesMapping()
    number = names.get((level or settings.log_level).upper(), logging.INFO)
    fmt = settings.log_format or (LogFormat.CONSOLE if sys.stderr.isatty() else LogFormat.JSON)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        timestamper,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(number),
        cache_logger_on_first_use=False,
    )
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt is LogFormat.JSON:
        final.append(structlog.processors.format_exc_info)
    final.append(_renderer(fmt))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()], processors=final
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(number)
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


def set_level(level: str) -> None:
    """Log at `level` (DEBUG, INFO, WARNING, ERROR) from now on in this process: a service
    the CLI starts (`dialer api`, `dialer simulator`) logs at `LOG_LEVEL`, where the CLI's
    one-shot commands default to WARNING. Call after `configure_logging`."""
    number = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(number))
    logging.getLogger().setLevel(number)


def bind_context(**ids: Any) -> None:
    """Bind `ids` (not None ones) to every later log line of this task or request."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})
