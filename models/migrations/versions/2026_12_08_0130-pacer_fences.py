"""the highest pacer fencing token seen per account

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-08 01:00:00

`pacer_fences`: one row per account holding the highest fencing token of its pacer lock
(`dialer.dispatch.pacer`). A pacer writes its token when it takes the lock; a dispatch
round compares-and-sets it in the transaction that commits the round, so a pacer whose
lock lapsed and was taken by another can never commit a round.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | Sequence[str] | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pacer_fences",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_pacer_fences_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_pacer_fences")),
    )


def downgrade() -> None:
    op.drop_table("pacer_fences")
