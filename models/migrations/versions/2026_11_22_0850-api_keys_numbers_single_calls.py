"""named API keys; outbound caller IDs; single calls (per-contact settings, standing
campaigns); idempotency keys; machine action `continue`

Revision ID: 0007
Revises: 0008
Create Date: 2026-11-22 07:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE machine_action ADD VALUE IF NOT EXISTS 'continue'")
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_api_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.execute(
        "INSERT INTO api_keys (account_id, name, key_hash) "
        "SELECT id, 'default', api_key_hash FROM accounts WHERE api_key_hash IS NOT NULL"
    )
    op.drop_column("accounts", "api_key_hash")

    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("response_type", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_idempotency_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_idempotency_keys")),
    )

    op.add_column(
        "caller_ids",
        sa.Column("outbound", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )
    op.add_column(
        "campaigns",
        sa.Column("standing", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_index(
        "uq_campaigns_standing",
        "campaigns",
        ["account_id", "caller_id_id"],
        unique=True,
        postgresql_where=sa.text("standing AND status IN ('draft', 'running', 'paused')"),
    )

    op.drop_constraint("uq_call_jobs_campaign_id_phone_e164", "call_jobs", type_="unique")
    op.create_index(
        "uq_call_jobs_campaign_id_phone_e164",
        "call_jobs",
        ["campaign_id", "phone_e164"],
        unique=True,
        postgresql_where=sa.text("line_no IS NOT NULL"),
    )
    op.alter_column("call_jobs", "line_no", nullable=True)
    op.add_column(
        "call_jobs",
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.add_column("call_jobs", sa.Column("message", sa.Text(), nullable=True))
    op.add_column("call_jobs", sa.Column("ring_timeout_s", sa.Integer(), nullable=True))
    op.add_column("call_jobs", sa.Column("time_limit_s", sa.Integer(), nullable=True))
    op.add_column("call_jobs", sa.Column("max_hold_s", sa.Integer(), nullable=True))
    op.add_column("call_jobs", sa.Column("machine_detection", sa.Boolean(), nullable=True))
    op.add_column(
        "call_jobs",
        sa.Column(
            "machine_action",
            postgresql.ENUM(name="machine_action", create_type=False),
            nullable=True,
        ),
    )


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value; `continue` stays. Single calls (line_no NULL)
    # are deleted: the old schema has no place for them.
    for column in (
        "machine_action",
        "machine_detection",
        "max_hold_s",
        "time_limit_s",
        "ring_timeout_s",
        "message",
        "created_at",
    ):
        op.drop_column("call_jobs", column)
    op.execute("DELETE FROM call_jobs WHERE line_no IS NULL")
    op.alter_column("call_jobs", "line_no", nullable=False)
    op.drop_index("uq_call_jobs_campaign_id_phone_e164", "call_jobs")
    op.create_unique_constraint(
        "uq_call_jobs_campaign_id_phone_e164", "call_jobs", ["campaign_id", "phone_e164"]
    )
    op.drop_index("uq_campaigns_standing", "campaigns")
    op.drop_column("campaigns", "standing")
    op.drop_column("caller_ids", "outbound")
    op.drop_table("idempotency_keys")
    op.add_column("accounts", sa.Column("api_key_hash", sa.String(length=128), nullable=True))
    op.execute(
        "UPDATE accounts a SET api_key_hash = k.key_hash FROM ("
        "SELECT DISTINCT ON (account_id) account_id, key_hash FROM api_keys "
        "WHERE revoked_at IS NULL ORDER BY account_id, id) k WHERE k.account_id = a.id"
    )
    op.drop_table("api_keys")
