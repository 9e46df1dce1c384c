"""calling windows: the campaign's window, days, holidays, zone and end; each contact's
zones, region, state and call_before; the indexes of the claim and the frequency cap

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 07:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "campaigns",
        sa.Column("window_start", sa.Time(), server_default=sa.text("'09:00'"), nullable=False),
    )
    op.add_column(
        "campaigns",
        sa.Column("window_end", sa.Time(), server_default=sa.text("'20:00'"), nullable=False),
    )
    op.add_column(
        "campaigns",
        sa.Column(
            "window_days",
            postgresql.ARRAY(sa.SmallInteger()),
            server_default=sa.text("'{0,1,2,3,4,5,6}'"),
            nullable=False,
        ),
    )
    op.add_column(
        "campaigns",
        sa.Column(
            "holidays", postgresql.ARRAY(sa.Date()), server_default=sa.text("'{}'"), nullable=False
        ),
    )
    op.add_column(
        "campaigns",
        sa.Column(
            "skip_public_holidays", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.add_column("campaigns", sa.Column("timezone", sa.String(64)))
    op.add_column("campaigns", sa.Column("end_at", sa.DateTime(timezone=True)))
    op.add_column(
        "call_jobs",
        sa.Column(
            "zones", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
    )
    op.add_column("call_jobs", sa.Column("region", sa.String(3)))
    op.add_column("call_jobs", sa.Column("subdivision", sa.String(3)))
    op.add_column("call_jobs", sa.Column("call_before", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_call_jobs_campaign_due",
        "call_jobs",
        ["campaign_id", "next_due_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_call_attempts_number", "call_attempts", ["account_id", "phone_e164", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_call_attempts_number", "call_attempts")
    op.drop_index("ix_call_jobs_campaign_due", "call_jobs")
    for column in ("call_before", "subdivision", "region", "zones"):
        op.drop_column("call_jobs", column)
    for column in (
        "end_at",
        "timezone",
        "skip_public_holidays",
        "holidays",
        "window_days",
        "window_end",
        "window_start",
    ):
        op.drop_column("campaigns", column)
