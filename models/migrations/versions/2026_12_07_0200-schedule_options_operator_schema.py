"""schedules keep only the operator's settings: no internal settings, no fixed dates, a
typed retry matrix

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-07 02:00:00

A schedule's `options` were checked against every campaign setting, the internal ones
too, so a tenant could store `allow_premium`, `allowed_countries` and `dial_retries`
through `POST /v1/schedules`, any retry matrix (an answered call retried, a delay of
"x"), and fixed `start_at` / `end_at` that every occurrence copied (once `end_at` had
passed, each later run expired all its contacts at once). Schedules now take
`campaigns.options.ScheduleOptions`, which a firing checks again: a stored value it
refuses would fail every run of the schedule. So this migration removes from each
schedule's `options` what the schema no longer takes:

- `allow_premium`, `allowed_countries`, `dial_retries`: the installation's settings,
  never a tenant's (the `dialer schedules create` CLI never offered them, so a schedule
  holding one was made over the API);
- `start_at`, `end_at`: a schedule has no fixed dates (`expire_after_s`, counted from
  each occurrence, replaces `end_at`; there is no safe translation of a fixed date into
  one, so it is dropped and the runs no longer expire);
- from `retry_policy`, every entry that is not an outcome that may retry (`busy`,
  `no-answer`, `failed`, `machine`) mapped to `{"retry": bool, "delay_s": 60..604800}`.

Campaigns a schedule already created from such options lose `allow_premium` (premium-rate
numbers are refused again when dialled, whatever the campaign says, only where it is
false). Campaign retry matrices stay as stored: `dialer.calls.retry_delay` reads them
typed and never retries an answered call. Downgrade keeps the cleaned options (what was
removed is not recorded anywhere).
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REMOVED = ("allow_premium", "allowed_countries", "dial_retries", "start_at", "end_at")
_INTERNAL = ("allow_premium", "allowed_countries", "dial_retries")
_RETRYABLE = ("busy", "no-answer", "failed", "machine")
_DELAY_S = (60, 7 * 86400)


def _rule_ok(rule: Any) -> bool:
    if not isinstance(rule, dict) or set(rule) != {"retry", "delay_s"}:
        return False
    delay = rule["delay_s"]
    return (
        isinstance(rule["retry"], bool)
        and isinstance(delay, int)
        and not isinstance(delay, bool)
        and _DELAY_S[0] <= delay <= _DELAY_S[1]
    )


def _cleaned(options: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in options.items() if k not in _REMOVED}
    policy = kept.get("retry_policy")
    if policy is not None:
        rules = policy if isinstance(policy, dict) else {}
        kept["retry_policy"] = {
            outcome: rule
            for outcome, rule in rules.items()
            if outcome in _RETRYABLE and _rule_ok(rule)
        }
    return kept


def upgrade() -> None:
    bind = op.get_bind()
    schedules = sa.table("schedules", sa.column("id", sa.BigInteger), sa.column("options", sa.JSON))
    for schedule_id, options in bind.execute(sa.select(schedules.c.id, schedules.c.options)):
        if not isinstance(options, dict):
            continue
        cleaned = _cleaned(options)
        if cleaned == options:
            continue
        bind.execute(
            sa.text("UPDATE schedules SET options = CAST(:options AS jsonb) WHERE id = :id"),
            {"options": json.dumps(cleaned), "id": schedule_id},
        )
        if any(key in options for key in _INTERNAL):
            bind.execute(
                sa.text(
                    "UPDATE campaigns SET allow_premium = false WHERE id IN "
                    "(SELECT campaign_id FROM schedule_runs WHERE schedule_id = :id)"
                ),
                {"id": schedule_id},
            )


def downgrade() -> None:
    """Nothing to restore: the removed settings were never the tenant's to set."""
