"""`DialerTask` around a task body, called as a plain function: log context, counters,
not-found mapping. (The wiring with a real worker: `test_wiring.py`.)"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from celery import Celery
from celery.exceptions import Retry
from prometheus_client import REGISTRY

from dialer.errors import NotFoundError
from tests.support import captured_logs
from workers.base import DialerTask

app = Celery("base-test", set_as_current=False, task_cls=DialerTask)


@app.task(name="test.context")
def context_task(account_id: int, attempt_id: int | None = None, **extra: Any) -> dict[str, Any]:
    return structlog.contextvars.get_contextvars()


@app.task(name="test.not_found")
def not_found_task(campaign_id: int) -> str:
    raise NotFoundError("campaign_not_found", f"no campaign {campaign_id}")


@app.task(name="test.fails")
def failing_task() -> None:
    raise RuntimeError("boom")


@app.task(name="test.retries", bind=True)
def retrying_task(self: DialerTask, attempt_id: int) -> None:
    raise self.retry(countdown=60)


def count(task: str, state: str) -> float:
    return REGISTRY.get_sample_value("dialer_tasks_total", {"task": task, "state": state}) or 0.0


def test_ids_are_bound_by_position_or_keyword_for_the_task_and_reset_after() -> None:
    structlog.contextvars.bind_contextvars(request_id="outer")
    try:
        seen = context_task(7, attempt_id=42, campaign_id=3)
        assert seen == {
            "request_id": "outer",
            "task_id": None,  # called as a plain function: no message, no id
            "task_name": "test.context",
            "account_id": 7,
            "attempt_id": 42,
        }
        # Only the task's own parameters are ids: `campaign_id` went to **extra.
        assert structlog.contextvars.get_contextvars() == {"request_id": "outer"}
    finally:
        structlog.contextvars.clear_contextvars()


def test_not_found_is_a_warning_with_the_code_and_a_none_result() -> None:
    before = count("test.not_found", "not_found"), count("test.not_found", "failed")
    with captured_logs() as logs:
        assert not_found_task(5) is None
    assert [e for e in logs if e["event"] == "task_target_not_found"] == [
        {
            "event": "task_target_not_found",
            "log_level": "warning",
            "code": "campaign_not_found",
            "message": "no campaign 5",
            "task_id": None,
            "task_name": "test.not_found",
            "campaign_id": 5,
        }
    ]
    after = count("test.not_found", "not_found"), count("test.not_found", "failed")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 0)


def test_runs_are_counted_by_state() -> None:
    states = ("started", "succeeded", "retried", "failed")
    before = {(t, s): count(t, s) for t in ("test.fails", "test.retries") for s in states}
    with pytest.raises(RuntimeError):
        failing_task()
    with pytest.raises(Retry):
        retrying_task(1)
    after = {key: count(*key) - value for key, value in before.items()}
    assert {key: n for key, n in after.items() if n} == {
        ("test.fails", "started"): 1,
        ("test.fails", "failed"): 1,
        ("test.retries", "started"): 1,
        ("test.retries", "retried"): 1,
    }
