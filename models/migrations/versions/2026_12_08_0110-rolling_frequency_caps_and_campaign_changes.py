"""rolling per-number frequency caps; campaign changes and single-call cancels recorded

Revision ID: 0023
Revises: 0021
Create Date: 2026-12-08 01:00:00

`accounts.frequency_caps` replaces `accounts.max_calls_per_number_per_day`: a list of
rolling limits `{"calls": N, "days": D}` ("at most N calls to one number in any D days",
FCC 20-186; Amazon Connect's per-recipient communication limits). Each account's daily cap
becomes the one limit `{"calls": <cap>, "days": 1}`, so nothing dials differently after the
upgrade. The check reads `ix_call_attempts_number` (account, number, time), as before.

`campaign_events.changes` holds a settings change's before and after values per field
(`PATCH /v1/campaigns/{id}`, `dialer campaigns set`), `campaign_events.api_key_id` the API
key that made it. `end_reason` gains `call_canceled` (`DELETE /v1/calls/{id}`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE end_reason ADD VALUE IF NOT EXISTS 'call_canceled'")
    op.add_column(
        "accounts",
        sa.Column(
            "frequency_caps",
            postgresql.JSONB(),
            server_default=sa.text("""'[{"calls": 3, "days": 1}]'::jsonb"""),
            nullable=False,
        ),
    )
    op.execute(
        "UPDATE accounts SET frequency_caps = jsonb_build_array("
        "jsonb_build_object('calls', max_calls_per_number_per_day, 'days', 1))"
    )
    op.alter_column("accounts", "frequency_caps", server_default=None)
    op.drop_column("accounts", "max_calls_per_number_per_day")  # and its check constraint
    op.add_column("campaign_events", sa.Column("changes", postgresql.JSONB()))
    op.add_column(
        "campaign_events",
        sa.Column(
            "api_key_id",
            sa.BigInteger(),
            sa.ForeignKey("api_keys.id", ondelete="SET NULL"),
        ),
    )


def downgrade() -> None:
    op.drop_column("campaign_events", "api_key_id")
    op.drop_column("campaign_events", "changes")
    op.add_column(
        "accounts",
        sa.Column("max_calls_per_number_per_day", sa.Integer(), server_default="3", nullable=False),
    )
    # The tightest daily figure the limits imply: the calls of the 1-day limit, else 3.
    op.execute(
        "UPDATE accounts SET max_calls_per_number_per_day = coalesce(("
        "SELECT min((c->>'calls')::int) FROM jsonb_array_elements(frequency_caps) c "
        "WHERE (c->>'days')::int = 1), 3)"
    )
    op.alter_column("accounts", "max_calls_per_number_per_day", server_default=None)
    op.create_check_constraint(
        "max_calls_per_number_per_day_positive", "accounts", "max_calls_per_number_per_day > 0"
    )
    op.drop_column("accounts", "frequency_caps")
