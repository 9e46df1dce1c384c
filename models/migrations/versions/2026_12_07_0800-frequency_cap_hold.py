"""a contact held by the per-number frequency cap says until when

Revision ID: 0019
Revises: 0015
Create Date: 2026-12-07 08:00:00

`call_jobs.capped_until`: set by the pacer when it moves a pending contact past the
account's `max_calls_per_number_per_day` (when the number leaves the cap), cleared when the
contact is dialled or moved for another reason; so a report tells a contact waiting for the
cap from one waiting for its calling window. `ix_call_jobs_capped` (partial: pending
contacts held by the cap) lets a report count a campaign's held contacts and find the
first one due without reading the others. The counters' triggers ignore the column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("call_jobs", sa.Column("capped_until", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_call_jobs_capped",
        "call_jobs",
        ["campaign_id", "next_due_at", "attempt_count"],
        postgresql_where=sa.text("status = 'pending' AND capped_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_call_jobs_capped", "call_jobs")
    op.drop_column("call_jobs", "capped_until")
