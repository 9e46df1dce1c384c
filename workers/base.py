"""`DialerTask`: the base class of every task (the app's `task_cls`).

What each task would otherwise repeat, done once around the task body:

- structlog context: `task_id`, `task_name`, and whichever of `attempt_id`, `campaign_id`
  and `account_id` the task takes (by keyword or by position), bound for the task's
  duration and reset after, so every log line the engine writes names its task and ids;
- counters per task name (`dialer_tasks_total{task, state}`, defined in `dialer.metrics`):
  `started`, then one of `succeeded`, `not_found`, `retried`, `failed`;
- `dialer.errors.NotFoundError` (the id no longer names a row) is a warning with the
  error's code and a `None` result, never a failed task: a redelivered or late message for a
  deleted row is normal, and retrying it cannot help.

`place_call` is the hot path: the argument positions are worked out once per task class,
and the labelled counter children are looked up once, so the wrapper costs a few
microseconds. (Shape after pypi/warehouse `warehouse/tasks.py::WarehouseTask`.)
"""

from __future__ import annotations

import inspect
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Retry

from dialer.errors import NotFoundError
from dialer.metrics import TASKS

log = structlog.get_logger(__name__)

CONTEXT_IDS = ("attempt_id", "campaign_id", "account_id")
"""Task arguments bound into the log context when a task takes them."""

STATES = ("started", "succeeded", "not_found", "retried", "failed")


class DialerTask(Task):  # type: ignore[misc]  # Celery ships no type information
    """Binds log context, counts runs, and maps `NotFoundError` the same way for every task."""

    _id_positions: tuple[tuple[str, int], ...] | None = None
    _counters: dict[str, Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        counters = self._counters or self._make_counters()
        counters["started"].inc()
        request = self.request_stack.top  # `self.request` would build a default on direct calls
        context = {"task_id": request and request.id, "task_name": self.name}
        positions = self._id_positions
        if positions is None:
            positions = self._find_id_positions()
        for name, position in positions:
            if name in kwargs:
                context[name] = kwargs[name]
            elif position < len(args):
                context[name] = args[position]
        tokens = structlog.contextvars.bind_contextvars(**context)
        try:
            if request is None or request.called_directly:
                result = super().__call__(*args, **kwargs)  # pushes the request and task
            else:
                result = self.run(*args, **kwargs)  # a worker: the tracer pushed both
        except NotFoundError as error:
            log.warning("task_target_not_found", code=error.code, message=error.message)
            counters["not_found"].inc()
            return None
        except Retry:
            counters["retried"].inc()
            raise
        except BaseException:
            counters["failed"].inc()
            raise
        else:
            counters["succeeded"].inc()
            return result
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    def _make_counters(self) -> dict[str, Any]:
        counters = {state: TASKS.labels(task=self.name, state=state) for state in STATES}
        type(self)._counters = counters
        return counters

    def _find_id_positions(self) -> tuple[tuple[str, int], ...]:
        """(name, position in the arguments) of each context id the task's `run` takes."""
        parameters = list(inspect.signature(self.run).parameters)
        positions = tuple(
            (name, parameters.index(name)) for name in CONTEXT_IDS if name in parameters
        )
        type(self)._id_positions = positions
        return positions
