"""caller-ID pools: per-number minute and day limits, rested numbers, pools of campaigns
and single calls

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-08 01:00:00

`caller_ids.max_calls_per_minute` / `max_calls_per_day`: calls one number may present in
any sliding minute and day (null: no limit; numbers that exist keep none, so no running
campaign is slowed by the upgrade; a number added through the API or CLI starts at the
vendor guidance, 10 and 100). `caller_ids.rested_at` / `rested_reason`: a number taken out
of selection, by the automatic rest of a flagged number or by its operator.
`campaigns.pool_caller_ids`: the numbers of its caller-ID pool after `caller_id_id` (empty:
it presents `caller_id_id` alone). `call_jobs.pool_caller_ids`: a single call's own pool
(null: its campaign's). `accounts.rest_flagged_numbers`: the operator setting that rests a
flagged number automatically. All are new nullable or defaulted columns: no table rewrite.
`ix_call_attempts_campaign_created`: a campaign's attempts of the last day, read by the
number-health report (one more index entry per attempt; built with a write lock on
`call_attempts` while it runs).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("caller_ids", sa.Column("max_calls_per_minute", sa.Integer()))
    op.add_column("caller_ids", sa.Column("max_calls_per_day", sa.Integer()))
    op.add_column("caller_ids", sa.Column("rested_at", sa.DateTime(timezone=True)))
    op.add_column("caller_ids", sa.Column("rested_reason", sa.Text()))
    op.create_check_constraint(
        "max_calls_per_minute_positive", "caller_ids", "max_calls_per_minute > 0"
    )
    op.create_check_constraint("max_calls_per_day_positive", "caller_ids", "max_calls_per_day > 0")
    op.add_column(
        "campaigns",
        sa.Column(
            "pool_caller_ids",
            postgresql.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.add_column("call_jobs", sa.Column("pool_caller_ids", postgresql.ARRAY(sa.BigInteger())))
    op.add_column(
        "accounts",
        sa.Column(
            "rest_flagged_numbers", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.create_index(
        "ix_call_attempts_campaign_created", "call_attempts", ["campaign_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_call_attempts_campaign_created", "call_attempts")
    op.drop_column("accounts", "rest_flagged_numbers")
    op.drop_column("call_jobs", "pool_caller_ids")
    op.drop_column("campaigns", "pool_caller_ids")
    op.drop_constraint("max_calls_per_day_positive", "caller_ids")
    op.drop_constraint("max_calls_per_minute_positive", "caller_ids")
    op.drop_column("caller_ids", "rested_reason")
    op.drop_column("caller_ids", "rested_at")
    op.drop_column("caller_ids", "max_calls_per_day")
    op.drop_column("caller_ids", "max_calls_per_minute")
