"""end_reason becomes an enum

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

END_REASON = postgresql.ENUM("hold_cap", "lease_expired", "machine", name="end_reason")


def upgrade() -> None:
    END_REASON.create(op.get_bind())
    op.alter_column(
        "call_attempts",
        "end_reason",
        type_=END_REASON,
        existing_type=sa.String(length=32),
        postgresql_using="end_reason::end_reason",
    )


def downgrade() -> None:
    op.alter_column(
        "call_attempts",
        "end_reason",
        type_=sa.String(length=32),
        existing_type=END_REASON,
        postgresql_using="end_reason::text",
    )
    END_REASON.drop(op.get_bind())
