"""campaign counters kept current by triggers: campaign_counters, campaign_minutes,
call_attempts.due_at

Revision ID: 0009
Revises: 0004
Create Date: 2026-11-22 09:00:00

Every contact (`call_jobs` row) and attempt (`call_attempts` row) contributes a fixed set
of (counter name, value) pairs, a pure function of the row (`dialer_job_counts`,
`dialer_attempt_counts`, `dialer_attempt_minutes`, `dialer_job_minutes`). Statement-level
triggers with transition tables add what each INSERT / UPDATE / DELETE (and COPY) changes:
the new rows' contributions minus the old rows', aggregated, in the same transaction. So
the counters always equal the sum over the current rows (`campaigns.counters.recount`),
whichever code path changed them, a million-row bulk update included.

Each backend writes its own stripe (`stripe = pg_backend_pid()`): two transactions in
flight never update the same counter row, so counters add no lock waits and no deadlock
between callbacks; `dialer_fold_counters()` folds the stripes of backends that are gone
into stripe 0, keeping the rows a report sums few.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TALK_BOUNDS = "{0,5,10,15,20,30,45,60,90,120,180,240,300,420,600,900,1200,1800,3600}"
"""Lower bounds (seconds) of the talk-time histogram's buckets: `campaigns.counters`."""
DELAY_BOUNDS = "{0,0.1,0.25,0.5,1,2,5,10,20,30,60,120,300,600,1800,3600}"
"""Lower bounds (seconds) of the due-to-dial delay histogram's buckets."""

FUNCTIONS = f"""
CREATE FUNCTION dialer_job_counts(
    status text, outcome text, attempt_count integer, answered_by text, error_code integer
) RETURNS TABLE (name text, value bigint) LANGUAGE sql IMMUTABLE AS $$
    SELECT t.name, t.value FROM (VALUES
        ('contacts.total', 1),
        ('contacts.' || CASE
            WHEN status = 'pending' AND attempt_count = 0 AND outcome IS NULL THEN 'fresh'
            WHEN status = 'pending' THEN 'retry'
            WHEN status = 'done' AND outcome = 'expired' THEN 'expired'
            ELSE status END, 1),
        ('contacts.attempted', CASE WHEN attempt_count > 0 THEN 1 ELSE 0 END),
        ('contacts.attempt_sum', attempt_count),
        ('outcome.' || coalesce(outcome, 'none'), CASE WHEN status = 'done' THEN 1 ELSE 0 END),
        ('outcome.machine.' || coalesce(answered_by, 'unknown'),
            CASE WHEN status = 'done' AND outcome = 'machine' THEN 1 ELSE 0 END),
        ('outcome.failed.' || coalesce(error_code::text, 'none'),
            CASE WHEN status = 'done' AND outcome = 'failed' THEN 1 ELSE 0 END)
    ) AS t(name, value)
    WHERE t.value <> 0
$$;

CREATE FUNCTION dialer_attempt_counts(
    status text, answered_at timestamptz, duration_s integer, answered_by text,
    digits text, end_reason text, placed_at timestamptz, ended_at timestamptz,
    due_at timestamptz
) RETURNS TABLE (name text, value bigint) LANGUAGE sql IMMUTABLE AS $$
    SELECT t.name, t.value::bigint FROM (
        SELECT
            status IN ('dialing', 'placing') AS pre,
            status IN ('queued', 'initiated', 'ringing', 'in-progress') AS live,
            status IN ('completed', 'busy', 'no-answer', 'failed', 'canceled') AS ended
    ) p, LATERAL (SELECT p.live OR p.ended AS call) c,
    LATERAL (SELECT c.call AND answered_at IS NOT NULL AS answered) a,
    LATERAL (VALUES
        ('attempts.total', 1),
        ('attempts.pre', CASE WHEN p.pre THEN 1 ELSE 0 END),
        ('attempts.live', CASE WHEN p.live THEN 1 ELSE 0 END),
        ('attempts.placed', CASE WHEN c.call THEN 1 ELSE 0 END),
        ('attempts.late', CASE WHEN end_reason = 'late_create' THEN 1 ELSE 0 END),
        ('attempts.answered', CASE WHEN a.answered THEN 1 ELSE 0 END),
        ('attempts.human', CASE WHEN a.answered AND coalesce(answered_by, '') NOT IN
            ('machine_start', 'machine_end_beep', 'machine_end_silence',
             'machine_end_other', 'fax') THEN 1 ELSE 0 END),
        ('attempts.digits.' || coalesce(digits, ''),
            CASE WHEN c.call AND digits IN ('1', '2') THEN 1 ELSE 0 END),
        ('talk.calls', CASE WHEN p.ended AND duration_s > 0 THEN 1 ELSE 0 END),
        ('talk.seconds', CASE WHEN p.ended AND duration_s > 0 THEN duration_s ELSE 0 END),
        ('talk.billable_minutes',
            CASE WHEN p.ended AND duration_s > 0 THEN (duration_s + 59) / 60 ELSE 0 END),
        ('talk.b.' || width_bucket(coalesce(duration_s, 0), '{TALK_BOUNDS}'::integer[]),
            CASE WHEN p.ended AND duration_s > 0 THEN 1 ELSE 0 END),
        ('hold.calls', CASE WHEN p.ended AND placed_at IS NOT NULL THEN 1 ELSE 0 END),
        ('hold.seconds', CASE WHEN p.ended AND placed_at IS NOT NULL
            THEN greatest(0, ceil(extract(epoch FROM ended_at - placed_at)))::bigint
            ELSE 0 END),
        ('due.b.' || width_bucket(
            greatest(0, extract(epoch FROM placed_at - due_at)), '{DELAY_BOUNDS}'::numeric[]),
            CASE WHEN c.call AND due_at IS NOT NULL AND placed_at IS NOT NULL
            THEN 1 ELSE 0 END)
    ) AS t(name, value)
    WHERE t.value <> 0
$$;

CREATE FUNCTION dialer_attempt_minutes(
    status text, placed_at timestamptz, answered_at timestamptz, ended_at timestamptz
) RETURNS TABLE (minute timestamptz, dials integer, answers integer, ends integer, due integer)
LANGUAGE sql STABLE AS $$
    SELECT date_trunc('minute', t.at, 'UTC'), t.dials, t.answers, t.ends, 0 FROM (
        SELECT status IN ('completed', 'busy', 'no-answer', 'failed', 'canceled') AS ended,
               status IN ('queued', 'initiated', 'ringing', 'in-progress', 'completed',
                          'busy', 'no-answer', 'failed', 'canceled') AS call
    ) p, LATERAL (VALUES
        (placed_at, 1, 0, 0, p.call),
        (answered_at, 0, 1, 0, p.call AND answered_at IS NOT NULL),
        (ended_at, 0, 0, 1, p.ended)
    ) AS t(at, dials, answers, ends, counts)
    WHERE t.counts AND t.at IS NOT NULL
$$;

CREATE FUNCTION dialer_job_minutes(
    status text, outcome text, attempt_count integer, next_due_at timestamptz
) RETURNS TABLE (minute timestamptz, dials integer, answers integer, ends integer, due integer)
LANGUAGE sql STABLE AS $$
    SELECT date_trunc('minute', next_due_at, 'UTC'), 0, 0, 0, 1
    WHERE status = 'pending' AND attempt_count = 0 AND outcome IS NULL
$$;
"""  # noqa: S608 (DDL built from this module's constants)

# One counting statement per table and operation: `rows` are the transition tables, each
# with its sign. The upserts are ordered by key, so two of them never wait on each other
# in opposite orders (each backend has its own stripe anyway).
_JOB_ROWS = """
    SELECT r.campaign_id, k.name, k.value * {sign} AS value
    FROM {table} r
    LEFT JOIN LATERAL (
        SELECT a.answered_by, a.error_code FROM call_attempts a
        WHERE a.job_id = r.id AND r.status = 'done' AND r.outcome IN ('machine', 'failed')
        ORDER BY a.attempt_no DESC, a.id DESC LIMIT 1
    ) last ON true
    CROSS JOIN LATERAL dialer_job_counts(
        r.status::text, r.outcome::text, r.attempt_count, last.answered_by, last.error_code
    ) k
"""
_JOB_MINUTE_ROWS = """
    SELECT r.campaign_id, m.minute, m.dials * {sign} AS dials, m.answers * {sign} AS answers,
           m.ends * {sign} AS ends, m.due * {sign} AS due
    FROM {table} r
    CROSS JOIN LATERAL dialer_job_minutes(
        r.status::text, r.outcome::text, r.attempt_count, r.next_due_at
    ) m
"""
_ATTEMPT_ROWS = """
    SELECT r.campaign_id, k.name, k.value * {sign} AS value
    FROM {table} r
    CROSS JOIN LATERAL dialer_attempt_counts(
        r.status::text, r.answered_at, r.duration_s, r.answered_by, r.digits,
        r.end_reason::text, r.placed_at, r.ended_at, r.due_at
    ) k
"""
_ATTEMPT_MINUTE_ROWS = """
    SELECT r.campaign_id, m.minute, m.dials * {sign} AS dials, m.answers * {sign} AS answers,
           m.ends * {sign} AS ends, m.due * {sign} AS due
    FROM {table} r
    CROSS JOIN LATERAL dialer_attempt_minutes(
        r.status::text, r.placed_at, r.answered_at, r.ended_at
    ) m
"""


def _union(template: str, operation: str) -> str:
    parts = {
        "INSERT": [template.format(table="new_rows", sign=1)],
        "UPDATE": [
            template.format(table="new_rows", sign=1),
            template.format(table="old_rows", sign=-1),
        ],
        "DELETE": [template.format(table="old_rows", sign=-1)],
    }[operation]
    return "\nUNION ALL\n".join(parts)


def _trigger_function(table: str, operation: str) -> str:
    counts, minutes = {
        "call_jobs": (_JOB_ROWS, _JOB_MINUTE_ROWS),
        "call_attempts": (_ATTEMPT_ROWS, _ATTEMPT_MINUTE_ROWS),
    }[table]
    return f"""
CREATE FUNCTION dialer_count_{table}_{operation.lower()}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_counters AS c (campaign_id, name, stripe, value)
    SELECT d.campaign_id, d.name, pg_backend_pid(), sum(d.value)
    FROM ({_union(counts, operation)}) d
    GROUP BY d.campaign_id, d.name
    HAVING sum(d.value) <> 0
    ORDER BY d.campaign_id, d.name
    ON CONFLICT (campaign_id, name, stripe) DO UPDATE SET value = c.value + EXCLUDED.value;

    INSERT INTO campaign_minutes AS c
        (campaign_id, minute, stripe, dials, answers, ends, due)
    SELECT d.campaign_id, d.minute, pg_backend_pid(),
           sum(d.dials), sum(d.answers), sum(d.ends), sum(d.due)
    FROM ({_union(minutes, operation)}) d
    GROUP BY d.campaign_id, d.minute
    HAVING sum(abs(d.dials)) + sum(abs(d.answers)) + sum(abs(d.ends)) + sum(abs(d.due)) > 0
    ORDER BY d.campaign_id, d.minute
    ON CONFLICT (campaign_id, minute, stripe) DO UPDATE SET
        dials = c.dials + EXCLUDED.dials, answers = c.answers + EXCLUDED.answers,
        ends = c.ends + EXCLUDED.ends, due = c.due + EXCLUDED.due;
    RETURN NULL;
END
$$;
CREATE TRIGGER count_{operation.lower()} AFTER {operation} ON {table}
REFERENCING {"NEW TABLE AS new_rows" if operation != "DELETE" else ""}
    {"OLD TABLE AS old_rows" if operation != "INSERT" else ""}
FOR EACH STATEMENT EXECUTE FUNCTION dialer_count_{table}_{operation.lower()}();
"""  # noqa: S608 (DDL built from this module's constants)


FOLD = """
CREATE FUNCTION dialer_fold_counters() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('dialer_fold_counters')) THEN
        RETURN 0;
    END IF;
    WITH gone AS (
        DELETE FROM campaign_counters c
        WHERE c.stripe <> 0 AND NOT EXISTS (SELECT FROM pg_stat_activity s WHERE s.pid = c.stripe)
        RETURNING c.campaign_id, c.name, c.value
    ), added AS (
        INSERT INTO campaign_counters AS c (campaign_id, name, stripe, value)
        SELECT campaign_id, name, 0, sum(value) FROM gone GROUP BY campaign_id, name
        ORDER BY campaign_id, name
        ON CONFLICT (campaign_id, name, stripe) DO UPDATE SET value = c.value + EXCLUDED.value
        RETURNING 1
    )
    SELECT count(*) INTO folded FROM added;
    WITH gone AS (
        DELETE FROM campaign_minutes c
        WHERE c.stripe <> 0 AND NOT EXISTS (SELECT FROM pg_stat_activity s WHERE s.pid = c.stripe)
        RETURNING c.campaign_id, c.minute, c.dials, c.answers, c.ends, c.due
    )
    INSERT INTO campaign_minutes AS c (campaign_id, minute, stripe, dials, answers, ends, due)
    SELECT campaign_id, minute, 0, sum(dials), sum(answers), sum(ends), sum(due)
    FROM gone GROUP BY campaign_id, minute ORDER BY campaign_id, minute
    ON CONFLICT (campaign_id, minute, stripe) DO UPDATE SET
        dials = c.dials + EXCLUDED.dials, answers = c.answers + EXCLUDED.answers,
        ends = c.ends + EXCLUDED.ends, due = c.due + EXCLUDED.due;
    RETURN folded;
END
$$;
"""


def upgrade() -> None:
    op.add_column("call_attempts", sa.Column("due_at", sa.DateTime(timezone=True)))
    op.create_table(
        "campaign_counters",
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("stripe", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_counters_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "name", "stripe", name=op.f("pk_campaign_counters")),
    )
    op.create_table(
        "campaign_minutes",
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stripe", sa.Integer(), nullable=False),
        sa.Column("dials", sa.Integer(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("ends", sa.Integer(), nullable=False),
        sa.Column("due", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_minutes_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "campaign_id", "minute", "stripe", name=op.f("pk_campaign_minutes")
        ),
    )
    op.execute(FUNCTIONS)
    for table in ("call_jobs", "call_attempts"):
        for operation in ("INSERT", "UPDATE", "DELETE"):
            op.execute(_trigger_function(table, operation))
    op.execute(FOLD)


def downgrade() -> None:
    for table in ("call_jobs", "call_attempts"):
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER count_{operation} ON {table}")
            op.execute(f"DROP FUNCTION dialer_count_{table}_{operation}()")
    op.execute("DROP FUNCTION dialer_fold_counters()")
    op.execute("DROP FUNCTION dialer_job_minutes(text, text, integer, timestamptz)")
    op.execute("DROP FUNCTION dialer_attempt_minutes(text, timestamptz, timestamptz, timestamptz)")
    op.execute(
        "DROP FUNCTION dialer_attempt_counts(text, timestamptz, integer, text, text, text,"
        " timestamptz, timestamptz, timestamptz)"
    )
    op.execute("DROP FUNCTION dialer_job_counts(text, text, integer, text, integer)")
    op.drop_table("campaign_minutes")
    op.drop_table("campaign_counters")
    op.drop_column("call_attempts", "due_at")
