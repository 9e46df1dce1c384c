"""Sending tasks by name, for the entry points (the HTTP app, the CLI) and the tests.

The entry points do not import task functions (that would load every task module and its
engine imports into the web process): they send by the task's registered name, and the
app's `task_routes` put each on its queue. Call these after the transaction that made the
work commits (`models.on_commit`), so no worker looks for a row that is not there yet.
"""

from __future__ import annotations

from workers.app import app

PLACE_CALL = "dialer.place_call"
HANG_UP = "dialer.hang_up"
PACER = "dialer.pacer"
KICK_PACERS = "dialer.kick_pacers"
REAP = "dialer.reap"
RESOLVE_LATE_CALL = "dialer.resolve_late_call"
FOLD_COUNTERS = "dialer.fold_counters"


def kick_pacer(account_id: int) -> None:
    """Make sure a pacer runs for the account (a second one exits at once on the lock)."""
    app.send_task(PACER, args=[account_id])


def hang_up(attempt_id: int, reason: str) -> None:
    """Ask a worker to end a live call at the provider with `reason` as its end reason."""
    app.send_task(HANG_UP, args=[attempt_id, reason])


def place_calls(attempt_ids: list[int]) -> None:
    """Send one `place_call` per committed `dialing` attempt."""
    for attempt_id in attempt_ids:
        app.send_task(PLACE_CALL, args=[attempt_id])


def resolve_late_call(attempt_id: int, call_sid: str) -> None:
    """Have a worker adopt or hang up a call made for an attempt already given up."""
    app.send_task(RESOLVE_LATE_CALL, args=[attempt_id, call_sid])
