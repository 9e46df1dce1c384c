"""campaign counters kept current by triggers: campaign_counters, campaign_minutes,
call_attempts.due_at

Revision ID: 0009
Revises: 0007
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
into stripe 0, keeping the rows a report sums few. No foreign key to `campaigns`: its
check would share-lock the campaign row from inside every dialling transaction that adds
a counter row (a new minute, a new backend), against the operator's `FOR UPDATE` of it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TALK_BOUNDS = "{0,5,10,15,20,30,45,60,90,120,180,240,300,420,600,900,1200,1800,3600}"
"""Lower bounds (seconds) of the talk-time histogram's buckets: `campaigns.counters`."""
DELAY_BOUNDS = "{0,0.1,0.25,0.5,1,2,5,10,20,30,60,120,300,600,1800,3600}"
"""Lower bounds (seconds) of the due-to-dial delay histogram's buckets."""
TALK_ARRAY, DELAY_ARRAY = (
    b.replace("{", "{{").replace("}", "}}") for b in (TALK_BOUNDS, DELAY_BOUNDS)
)
"""The same, as they must appear in a template that is then `str.format`ted."""

MACHINE = "('machine_start', 'machine_end_beep', 'machine_end_silence', 'machine_end_other', 'fax')"
"""Twilio `AnsweredBy` values meaning no person took the call (`dialer.calls.MACHINE_ANSWERS`)."""
CALL = (
    "('queued', 'initiated', 'ringing', 'in-progress',"
    " 'completed', 'busy', 'no-answer', 'failed', 'canceled')"
)
"""Attempt statuses of a provider call."""
ENDED = "('completed', 'busy', 'no-answer', 'failed', 'canceled')"
"""Attempt statuses of a call that ended."""
PHASE = (
    "CASE WHEN {r}.status IN ('dialing', 'placing') THEN 'pre'"
    " WHEN {r}.status IN ('queued', 'initiated', 'ringing', 'in-progress') THEN 'live'"
    f" WHEN {{r}}.status IN {ENDED} THEN 'ended' ELSE 'unplaced' END"
)
"""An attempt's phase, all the counters read of its status: `pre` (no call yet), `live`,
`ended`, `unplaced` (`not-placed`: no call was made)."""
ATTEMPT_COLUMNS = (
    "campaign_id, answered_at, answered_by, digits, duration_s, end_reason, placed_at,"
    " ended_at, due_at"
)
"""The attempt columns the counters read besides its phase."""
JOB_COLUMNS = "campaign_id, status, outcome, attempt_count, next_due_at"
"""The contact columns the counters read."""

# The facts each row contributes, grouped before they become counters: a statement that
# changes a million rows (a COPY at ingest, a bulk cancel) aggregates them into a few
# groups in one pass, and the counter names are made once per group, not once per row.
# `{rows}` is a transition table (or the table itself, for the recount), `{sign}` 1 or -1.
DETAILED = "(r.status = 'done' AND coalesce(r.outcome IN ('machine', 'failed'), false))"
"""A done contact whose outcome the report details by its last attempt (`AnsweredBy`, the
provider's error code): only these look their last attempt up."""
JOB_FACTS = f"""
    SELECT r.campaign_id, r.status, r.outcome,
           r.attempt_count > 0 AS attempted, NULL::text AS answered_by,
           NULL::integer AS error_code, {{sign}} AS n, {{sign}} * r.attempt_count AS attempt_sum
    FROM {{rows}} r
    {{where}} {{and_or_where}} NOT {DETAILED}
    UNION ALL
    SELECT r.campaign_id, r.status, r.outcome, r.attempt_count > 0,
           last.answered_by, last.error_code, {{sign}}, {{sign}} * r.attempt_count
    FROM {{rows}} r
    LEFT JOIN LATERAL (
        SELECT a.answered_by, a.error_code FROM call_attempts a
        WHERE a.job_id = r.id ORDER BY a.attempt_no DESC, a.id DESC LIMIT 1
    ) last ON true
    {{where}} {{and_or_where}} {DETAILED}
"""  # noqa: S608 (DDL built from this module's constants)
JOB_KEYS = "campaign_id, status, outcome, attempted, answered_by, error_code"
JOB_SUMS = "sum(n)::bigint AS n, sum(attempt_sum)::bigint AS attempt_sum"
JOB_COUNTS = (
    "dialer_job_counts(g.status::text, g.outcome::text, g.attempted, g.answered_by, g.error_code,"
    " g.n, g.attempt_sum)"
)

ATTEMPT_FACTS = f"""
    SELECT r.campaign_id, {PHASE.format(r="r")} AS phase, r.answered_at IS NOT NULL AS answered,
           coalesce(r.answered_by, '') IN {MACHINE} AS machine,
           coalesce(r.digits, '') AS digits,
           coalesce(r.end_reason::text = 'late_create', false) AS late,
           CASE WHEN r.duration_s > 0
                THEN width_bucket(r.duration_s, '{TALK_ARRAY}'::integer[]) END AS talk_bucket,
           CASE WHEN r.due_at IS NOT NULL AND r.placed_at IS NOT NULL
                THEN width_bucket(greatest(0, date_part('epoch', r.placed_at - r.due_at)),
                                  '{DELAY_ARRAY}'::float8[]) END AS due_bucket,
           r.placed_at IS NOT NULL AS has_placed,
           {{sign}} AS n,
           {{sign}} * greatest(coalesce(r.duration_s, 0), 0) AS talk_s,
           {{sign}} * CASE WHEN r.duration_s > 0 THEN (r.duration_s + 59) / 60 ELSE 0 END
               AS billable,
           {{sign}} * CASE WHEN r.placed_at IS NOT NULL AND r.ended_at IS NOT NULL
               THEN greatest(0, ceil(date_part('epoch', r.ended_at - r.placed_at)))::bigint
               ELSE 0 END AS hold_s
    FROM {{rows}} r
    {{where}}
"""  # noqa: S608 (DDL built from this module's constants)
ATTEMPT_KEYS = (
    "campaign_id, phase, answered, machine, digits, late, talk_bucket, due_bucket, has_placed"
)
ATTEMPT_SUMS = (
    "sum(n)::bigint AS n, sum(talk_s)::bigint AS talk_s, sum(billable)::bigint AS billable,"
    " sum(hold_s)::bigint AS hold_s"
)
ATTEMPT_COUNTS = (
    "dialer_attempt_counts(g.phase, g.answered, g.machine, g.digits, g.late, g.talk_bucket,"
    " g.due_bucket, g.has_placed, g.n, g.talk_s, g.billable, g.hold_s)"
)

MINUTE = "date_bin('1 minute', {ts}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
"""The UTC minute a timestamp falls in (as `date_trunc('minute', ts, 'UTC')`, at half
the cost: no time zone is looked up)."""
JOB_MINUTE_FACTS = f"""
    SELECT r.campaign_id, {MINUTE.format(ts="r.next_due_at")} AS minute,
           0 AS dials, 0 AS answers, 0 AS ends, {{sign}} AS due
    FROM {{rows}} r
    {{where}} {{and_or_where}} r.status = 'pending' AND r.attempt_count = 0 AND r.outcome IS NULL
"""  # noqa: S608 (DDL built from this module's constants)
ATTEMPT_MINUTE_FACTS = f"""
    SELECT r.campaign_id, m.minute, m.dials * {{sign}} AS dials, m.answers * {{sign}} AS answers,
           m.ends * {{sign}} AS ends, 0 AS due
    FROM {{rows}} r
    CROSS JOIN LATERAL (VALUES
        ({MINUTE.format(ts="r.placed_at")}, 1, 0, 0, r.status IN {CALL}),
        ({MINUTE.format(ts="r.answered_at")}, 0, 1, 0,
         r.status IN {CALL} AND r.answered_at IS NOT NULL),
        ({MINUTE.format(ts="r.ended_at")}, 0, 0, 1, r.status IN {ENDED})
    ) AS m(minute, dials, answers, ends, counts)
    {{where}} {{and_or_where}} m.counts AND m.minute IS NOT NULL
"""  # noqa: S608 (DDL built from this module's constants)

FUNCTIONS = """
CREATE FUNCTION dialer_job_counts(
    status text, outcome text, attempted boolean, answered_by text, error_code integer,
    n bigint, attempt_sum bigint
) RETURNS TABLE (name text, value bigint) LANGUAGE sql IMMUTABLE AS $$
    SELECT t.name, t.value FROM (VALUES
        ('contacts.total', n),
        ('contacts.' || CASE
            WHEN status = 'pending' AND NOT attempted AND outcome IS NULL THEN 'fresh'
            WHEN status = 'pending' THEN 'retry'
            WHEN status = 'done' AND outcome = 'expired' THEN 'expired'
            ELSE status END, n),
        ('contacts.attempted', CASE WHEN attempted THEN n ELSE 0 END),
        ('contacts.attempt_sum', attempt_sum),
        ('outcome.' || coalesce(outcome, 'none'), CASE WHEN status = 'done' THEN n ELSE 0 END),
        ('outcome.machine.' || coalesce(answered_by, 'unknown'),
            CASE WHEN status = 'done' AND outcome = 'machine' THEN n ELSE 0 END),
        ('outcome.failed.' || coalesce(error_code::text, 'none'),
            CASE WHEN status = 'done' AND outcome = 'failed' THEN n ELSE 0 END)
    ) AS t(name, value)
    WHERE t.value <> 0
$$;

CREATE FUNCTION dialer_attempt_counts(
    phase text, answered boolean, machine boolean, digits text, late boolean,
    talk_bucket integer, due_bucket integer, has_placed boolean,
    n bigint, talk_s bigint, billable bigint, hold_s bigint
) RETURNS TABLE (name text, value bigint) LANGUAGE sql IMMUTABLE AS $$
    SELECT t.name, t.value FROM (
        SELECT phase = 'pre' AS pre, phase = 'live' AS live, phase = 'ended' AS ended,
               phase IN ('live', 'ended') AS call
    ) p, LATERAL (VALUES
        ('attempts.total', n),
        ('attempts.pre', CASE WHEN p.pre THEN n ELSE 0 END),
        ('attempts.live', CASE WHEN p.live THEN n ELSE 0 END),
        ('attempts.placed', CASE WHEN p.call THEN n ELSE 0 END),
        ('attempts.late', CASE WHEN late THEN n ELSE 0 END),
        ('attempts.answered', CASE WHEN p.call AND answered THEN n ELSE 0 END),
        ('attempts.human', CASE WHEN p.call AND answered AND NOT machine THEN n ELSE 0 END),
        ('attempts.digits.' || digits,
            CASE WHEN p.call AND digits IN ('1', '2') THEN n ELSE 0 END),
        ('talk.calls', CASE WHEN p.ended AND talk_bucket IS NOT NULL THEN n ELSE 0 END),
        ('talk.seconds', CASE WHEN p.ended AND talk_bucket IS NOT NULL THEN talk_s ELSE 0 END),
        ('talk.billable_minutes',
            CASE WHEN p.ended AND talk_bucket IS NOT NULL THEN billable ELSE 0 END),
        ('talk.b.' || coalesce(talk_bucket, 0),
            CASE WHEN p.ended AND talk_bucket IS NOT NULL THEN n ELSE 0 END),
        ('hold.calls', CASE WHEN p.ended AND has_placed THEN n ELSE 0 END),
        ('hold.seconds', CASE WHEN p.ended AND has_placed THEN hold_s ELSE 0 END),
        ('due.b.' || coalesce(due_bucket, 0),
            CASE WHEN p.call AND due_bucket IS NOT NULL THEN n ELSE 0 END)
    ) AS t(name, value)
    WHERE t.value <> 0
$$;
"""


def _facts(template: str, rows: str, sign: int, where: str = "") -> str:
    return template.format(
        rows=rows, sign=sign, where=where, and_or_where="AND" if where else "WHERE"
    )


def _counts(facts: list[str], keys: str, sums: str, counts: str) -> str:
    """(campaign_id, name, value) rows: the facts grouped, then named per group."""
    return f"""
    SELECT g.campaign_id, k.name, k.value
    FROM (SELECT {keys}, {sums} FROM ({" UNION ALL ".join(facts)}) f GROUP BY {keys}) g
    CROSS JOIN LATERAL {counts} k
"""  # noqa: S608 (DDL built from this module's constants)


def _sources(table: str, operation: str) -> list[tuple[str, int]]:
    return {
        "INSERT": [("new_rows", 1)],
        "UPDATE": [("new_rows", 1), ("old_rows", -1)],
        "DELETE": [("old_rows", -1)],
    }[operation]


def _queries(table: str, sources: list[tuple[str, int]], where: str = "") -> tuple[str, str]:
    """The counters query and the minutes query over `sources` (rows, sign)."""
    if table == "call_jobs":
        counts = _counts(
            [_facts(JOB_FACTS, rows, sign, where) for rows, sign in sources],
            JOB_KEYS,
            JOB_SUMS,
            JOB_COUNTS,
        )
        minutes = [_facts(JOB_MINUTE_FACTS, rows, sign, where) for rows, sign in sources]
    else:
        counts = _counts(
            [_facts(ATTEMPT_FACTS, rows, sign, where) for rows, sign in sources],
            ATTEMPT_KEYS,
            ATTEMPT_SUMS,
            ATTEMPT_COUNTS,
        )
        minutes = [_facts(ATTEMPT_MINUTE_FACTS, rows, sign, where) for rows, sign in sources]
    return counts, " UNION ALL ".join(minutes)


def _trigger_function(table: str, operation: str, changed_only: bool = False) -> str:
    """The trigger function and its trigger. `changed_only` (UPDATE, migration 0010):
    count only the rows whose counted columns changed, not every updated row plus and
    minus (a batch of callbacks updates many attempts, few of them in a way that counts)."""
    sources = _sources(table, operation)
    changed = ""
    if changed_only:
        sources = [
            (f"(SELECT r.* FROM {rows} r JOIN changed USING (id))", sign)  # noqa: S608
            for rows, sign in sources
        ]
    counts, minutes = _queries(table, sources)
    name = f"dialer_count_{table}_{operation.lower()}"
    references = {
        "INSERT": "NEW TABLE AS new_rows",
        "UPDATE": "NEW TABLE AS new_rows OLD TABLE AS old_rows",
        "DELETE": "OLD TABLE AS old_rows",
    }[operation]
    unchanged = ""
    if operation == "UPDATE":
        # Most updates change nothing the counters read (a lease, a send deadline, a
        # provider status within one phase): answered by one join of the two transition
        # tables, before any counting.
        read = (
            f"{PHASE.format(r='{r}')}, "
            + ", ".join(f"{{r}}.{c}" for c in ATTEMPT_COLUMNS.split(", "))
            if table == "call_attempts"
            else ", ".join(f"{{r}}.{c}" for c in JOB_COLUMNS.split(", "))
        )
        differ = f"""
        SELECT n.id FROM new_rows n JOIN old_rows o USING (id)
        WHERE ({read.format(r="n")}) IS DISTINCT FROM ({read.format(r="o")})"""  # noqa: S608
        unchanged = f"""
    IF NOT EXISTS ({differ}
    ) THEN
        RETURN NULL;
    END IF;"""
        if changed_only:
            changed = f"changed AS ({differ}\n    ),"
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{unchanged}
    WITH {changed} counted AS (
        INSERT INTO campaign_counters AS c (campaign_id, name, stripe, value)
        SELECT d.campaign_id, d.name, pg_backend_pid(), sum(d.value)
        FROM ({counts}) d
        GROUP BY d.campaign_id, d.name
        HAVING sum(d.value) <> 0
        ON CONFLICT (campaign_id, name, stripe) DO UPDATE SET value = c.value + EXCLUDED.value
    )
    INSERT INTO campaign_minutes AS c (campaign_id, minute, stripe, dials, answers, ends, due)
    SELECT d.campaign_id, d.minute, pg_backend_pid(),
           sum(d.dials), sum(d.answers), sum(d.ends), sum(d.due)
    FROM ({minutes}) d
    GROUP BY d.campaign_id, d.minute
    HAVING sum(d.dials) <> 0 OR sum(d.answers) <> 0 OR sum(d.ends) <> 0 OR sum(d.due) <> 0
    ON CONFLICT (campaign_id, minute, stripe) DO UPDATE SET
        dials = c.dials + EXCLUDED.dials, answers = c.answers + EXCLUDED.answers,
        ends = c.ends + EXCLUDED.ends, due = c.due + EXCLUDED.due;
    RETURN NULL;
END
$$;
CREATE TRIGGER count_{operation.lower()} AFTER {operation} ON {table}
REFERENCING {references}
FOR EACH STATEMENT EXECUTE FUNCTION {name}();
"""  # noqa: S608 (DDL built from this module's constants)


def _recount_functions() -> str:
    """`dialer_recount(campaign)` and `dialer_recount_minutes(campaign)`: the same facts
    over every current row of the campaign (`campaigns.counters.recount`)."""
    where = "WHERE r.campaign_id = $1"
    job_counts, job_minutes = _queries("call_jobs", [("call_jobs", 1)], where)
    attempt_counts, attempt_minutes = _queries("call_attempts", [("call_attempts", 1)], where)
    return f"""
CREATE FUNCTION dialer_recount(campaign bigint) RETURNS TABLE (name text, value bigint)
LANGUAGE sql STABLE AS $$
    SELECT d.name, sum(d.value)::bigint FROM ({job_counts} UNION ALL {attempt_counts}) d
    GROUP BY d.name HAVING sum(d.value) <> 0
$$;
CREATE FUNCTION dialer_recount_minutes(campaign bigint) RETURNS TABLE (
    minute timestamptz, dials bigint, answers bigint, ends bigint, due bigint
) LANGUAGE sql STABLE AS $$
    SELECT d.minute, sum(d.dials)::bigint, sum(d.answers)::bigint, sum(d.ends)::bigint,
           sum(d.due)::bigint
    FROM ({job_minutes} UNION ALL {attempt_minutes}) d
    GROUP BY d.minute
    HAVING sum(d.dials) <> 0 OR sum(d.answers) <> 0 OR sum(d.ends) <> 0 OR sum(d.due) <> 0
$$;
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
        sa.PrimaryKeyConstraint(
            "campaign_id", "minute", "stripe", name=op.f("pk_campaign_minutes")
        ),
    )
    op.execute(FUNCTIONS)
    for table in ("call_jobs", "call_attempts"):
        for operation in ("INSERT", "UPDATE", "DELETE"):
            op.execute(_trigger_function(table, operation))
    op.execute(_recount_functions())
    op.execute(FOLD)


def downgrade() -> None:
    for table in ("call_jobs", "call_attempts"):
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER count_{operation} ON {table}")
            op.execute(f"DROP FUNCTION dialer_count_{table}_{operation}()")
    op.execute("DROP FUNCTION dialer_fold_counters()")
    op.execute("DROP FUNCTION dialer_recount_minutes(bigint)")
    op.execute("DROP FUNCTION dialer_recount(bigint)")
    op.execute(
        "DROP FUNCTION dialer_attempt_counts(text, boolean, boolean, text, boolean, integer,"
        " integer, boolean, bigint, bigint, bigint, bigint)"
    )
    op.execute(
        "DROP FUNCTION dialer_job_counts(text, text, boolean, text, integer, bigint, bigint)"
    )
    op.drop_table("campaign_minutes")
    op.drop_table("campaign_counters")
    op.drop_column("call_attempts", "due_at")
