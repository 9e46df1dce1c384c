"""the counting triggers of updates count only the rows whose counted columns changed

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 01:00:00

Migration 0009's UPDATE triggers computed every updated row's contribution twice (the new
row's, minus the old row's) and let unchanged rows cancel out. A batch of callbacks
(`dialer.dispatch.callbacks.CallbackBatcher`) updates many attempts in one statement, most
of them in ways no counter reads (a ringing call, a send deadline): the triggers now join
the transition tables once, keep the rows whose counted columns differ, and count only
those. The counters stay the same function of the rows (`campaigns.counters.recount`).
"""

from collections.abc import Sequence

from models.migrations.counting import rebuild_update_triggers

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rebuild_update_triggers(changed_only=True)


def downgrade() -> None:
    rebuild_update_triggers(changed_only=False)
