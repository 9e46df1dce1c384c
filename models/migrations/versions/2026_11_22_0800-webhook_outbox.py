"""webhooks to the customer: the outbox (webhook_events) and the account's signing secrets

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-22 08:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS = postgresql.ENUM(
    "pending", "delivered", "failed", "dead", name="webhook_status", create_type=False
)


def upgrade() -> None:
    op.add_column("accounts", sa.Column("webhook_secret", sa.Text()))
    op.add_column("accounts", sa.Column("webhook_secret_previous", sa.Text()))
    op.add_column("accounts", sa.Column("webhook_secret_rotated_at", sa.DateTime(timezone=True)))
    _STATUS.create(op.get_bind(), checkfirst=True)
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", _STATUS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_webhook_events_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_webhook_events_event_id")),
    )
    op.create_index(
        "ix_webhook_events_due",
        "webhook_events",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_events_account", "webhook_events", ["account_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_account", table_name="webhook_events")
    op.drop_index("ix_webhook_events_due", table_name="webhook_events")
    op.drop_table("webhook_events")
    _STATUS.drop(op.get_bind(), checkfirst=True)
    op.drop_column("accounts", "webhook_secret_rotated_at")
    op.drop_column("accounts", "webhook_secret_previous")
    op.drop_column("accounts", "webhook_secret")
