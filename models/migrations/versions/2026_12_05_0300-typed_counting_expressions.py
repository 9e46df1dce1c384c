"""the counting functions compare enums as enums, take minutes without a time zone, and
updates count every updated row again

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 03:00:00

Migration 0009's SQL now reads a row's facts with cheaper expressions, each giving the same
value as before for every row: an attempt's or contact's status and outcome compared as
their enum types (`status IN ('queued', ...)`) instead of cast to text first (each cast is
a catalog lookup, about 0.5 us, up to fifteen per changed row; the end reason stays cast,
as `late_create` is added in the transaction a new database migrates in, and a literal of
an uncommitted enum value is refused); the UTC minute as `date_bin('1 minute', ts,
'2000-01-01 00:00+00')` instead of `date_trunc('minute', ts, 'UTC')` (no time zone looked
up per call); seconds as `date_part('epoch', ...)` (float8) instead of `extract` (numeric),
whose bucket and ceiling agree for microsecond intervals.

With rows that cheap, migration 0010's join of the transition tables (to count only the
rows whose counted columns changed) costs more than the rows it skips: the UPDATE triggers
go back to 0009's form, the new rows counted plus and the old rows minus, unchanged ones
cancelling, after the same check that anything counted changed at all. On a 2-core
machine, the triggers' PostgreSQL time per callback in `bench/callbacks.py` fell by about
a fifth (0.17 ms to 0.13-0.15 ms, batches of about 6 callbacks; 6.5 % of the webhook's CPU
per callback to 5.5-5.9 %), and a 64-attempt batch's from 2.9 ms to 1.7 ms.

This migration rebuilds every counting trigger function and the recount functions from
that SQL; the counters already kept stay valid, as they are the same function of the rows
(`campaigns.counters.recount`). Downgrade rebuilds the UPDATE triggers as 0010 had them.
"""

from collections.abc import Sequence

from alembic import op

from models.migrations.counting import counters_migration, rebuild_update_triggers

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    counters = counters_migration()
    for table in ("call_jobs", "call_attempts"):
        for operation in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER count_{operation.lower()} ON {table}")
            op.execute(f"DROP FUNCTION dialer_count_{table}_{operation.lower()}()")
            op.execute(counters._trigger_function(table, operation))
    op.execute("DROP FUNCTION dialer_recount_minutes(bigint)")
    op.execute("DROP FUNCTION dialer_recount(bigint)")
    op.execute(counters._recount_functions())


def downgrade() -> None:
    rebuild_update_triggers(changed_only=True)
