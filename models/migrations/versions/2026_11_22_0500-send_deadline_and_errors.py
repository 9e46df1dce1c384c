"""send deadline, task failures, breaker trips; outcome error; end reasons late_create and
campaign_canceled

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 05:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("call_attempts", sa.Column("send_deadline", sa.DateTime(timezone=True)))
    op.add_column(
        "call_attempts",
        sa.Column("task_failures", sa.Integer(), server_default="0", nullable=False),
    )
    op.alter_column("call_attempts", "task_failures", server_default=None)
    op.add_column(
        "campaigns", sa.Column("breaker_trips", sa.Integer(), server_default="0", nullable=False)
    )
    op.alter_column("campaigns", "breaker_trips", server_default=None)
    op.execute("ALTER TYPE outcome ADD VALUE IF NOT EXISTS 'error'")
    op.execute("ALTER TYPE end_reason ADD VALUE IF NOT EXISTS 'late_create'")
    op.execute("ALTER TYPE end_reason ADD VALUE IF NOT EXISTS 'campaign_canceled'")


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value; the added values stay.
    op.drop_column("campaigns", "breaker_trips")
    op.drop_column("call_attempts", "task_failures")
    op.drop_column("call_attempts", "send_deadline")
