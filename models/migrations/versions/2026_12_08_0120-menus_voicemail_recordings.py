"""keypress menus, opt-outs, voicemail drops and recordings

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08 01:00:00

`campaigns.menu` replaces `campaigns.gather_dtmf`: a campaign that asked for the digit
(press 1 to confirm, 2 to cancel) gets that menu, worded as before, without the opt-out
line new campaigns offer by default (a running campaign's calls do not change under it).
`campaigns.voicemail_message`, `record`, `recording_disclosure`; a single call's own
`call_jobs.menu` and `record`; per attempt the menu
action, the voicemail drop and the recording. `dnc_entries.source` and `campaign_id` say a
number was listed by its callee's keypress and on which campaign's call; the two partial
indexes let a report count a campaign's opt-outs and voicemail drops without reading the
rest. The counters' triggers ignore the new columns.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEGACY_MENU = (
    '{"digits": {"1": {"action": "confirm", "to": null}, "2": {"action": "cancel", "to": null}},'
    ' "prompt": "Press 1 to confirm, 2 to cancel."}'
)


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("menu", postgresql.JSONB()))
    op.execute(
        sa.text("UPDATE campaigns SET menu = CAST(:menu AS jsonb) WHERE gather_dtmf").bindparams(
            menu=_LEGACY_MENU
        )
    )
    op.drop_column("campaigns", "gather_dtmf")
    op.add_column("campaigns", sa.Column("voicemail_message", sa.Text()))
    op.add_column(
        "campaigns",
        sa.Column("record", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )
    op.add_column("campaigns", sa.Column("recording_disclosure", sa.Text()))
    op.add_column("call_jobs", sa.Column("menu", postgresql.JSONB()))
    op.add_column("call_jobs", sa.Column("record", sa.Boolean()))
    op.add_column("call_attempts", sa.Column("menu_action", sa.String(16)))
    op.add_column("call_attempts", sa.Column("voicemail_dropped_at", sa.DateTime(timezone=True)))
    op.add_column("call_attempts", sa.Column("recording_sid", sa.String(34)))
    op.add_column("call_attempts", sa.Column("recording_url", sa.Text()))
    op.add_column("call_attempts", sa.Column("recording_duration_s", sa.Integer()))
    op.create_index(
        "ix_call_attempts_voicemail",
        "call_attempts",
        ["campaign_id"],
        postgresql_where=sa.text("voicemail_dropped_at IS NOT NULL"),
    )
    op.add_column("dnc_entries", sa.Column("source", sa.String(16)))
    op.add_column(
        "dnc_entries",
        sa.Column(
            "campaign_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "campaigns.id",
                ondelete="SET NULL",
                name=op.f("fk_dnc_entries_campaign_id_campaigns"),
            ),
        ),
    )
    op.create_index(
        "ix_dnc_entries_opt_outs",
        "dnc_entries",
        ["campaign_id"],
        postgresql_where=sa.text("source = 'keypress'"),
    )


def downgrade() -> None:
    op.drop_index("ix_dnc_entries_opt_outs", "dnc_entries")
    op.drop_column("dnc_entries", "campaign_id")
    op.drop_column("dnc_entries", "source")
    op.drop_index("ix_call_attempts_voicemail", "call_attempts")
    for column in (
        "recording_duration_s",
        "recording_url",
        "recording_sid",
        "voicemail_dropped_at",
        "menu_action",
    ):
        op.drop_column("call_attempts", column)
    op.drop_column("call_jobs", "record")
    op.drop_column("call_jobs", "menu")
    for column in ("recording_disclosure", "record", "voicemail_message"):
        op.drop_column("campaigns", column)
    op.add_column(
        "campaigns",
        sa.Column("gather_dtmf", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )
    op.execute("UPDATE campaigns SET gather_dtmf = menu IS NOT NULL")
    op.drop_column("campaigns", "menu")
