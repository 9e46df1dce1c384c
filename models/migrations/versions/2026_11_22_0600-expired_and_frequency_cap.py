"""outcome expired; the account's per-number daily frequency cap; webhook URLs and a
contact's metadata

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 06:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE outcome ADD VALUE IF NOT EXISTS 'expired'")
    op.add_column(
        "accounts",
        sa.Column("max_calls_per_number_per_day", sa.Integer(), server_default="3", nullable=False),
    )
    op.alter_column("accounts", "max_calls_per_number_per_day", server_default=None)
    op.create_check_constraint(
        "max_calls_per_number_per_day_positive",
        "accounts",
        "max_calls_per_number_per_day > 0",
    )
    op.add_column("accounts", sa.Column("webhook_url", sa.Text()))
    op.add_column(
        "call_jobs",
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("call_jobs", sa.Column("webhook_url", sa.Text()))


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value; `expired` stays.
    op.drop_column("call_jobs", "webhook_url")
    op.drop_column("call_jobs", "metadata")
    op.drop_column("accounts", "webhook_url")
    op.drop_constraint("max_calls_per_number_per_day_positive", "accounts")
    op.drop_column("accounts", "max_calls_per_number_per_day")
