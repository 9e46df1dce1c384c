"""a caller ID belongs to one account; the operator's per-account ceilings on caps

Revision ID: 0015
Revises: 0011
Create Date: 2026-12-07 04:00:00

Caller IDs were unique per (account, number), and whether a number may be added is asked of
the provider account every tenant shares, so two accounts could hold the same number. Now a
number is one account's at most (`uq_caller_ids_e164`), except Twilio's magic test number
+15005550006 (valid only with test credentials, which reach no one; the simulator gives it
to every account).

A database where two accounts already hold one number is refused, naming each number and
its accounts, rather than resolved here: keeping the oldest would take a caller ID from
campaigns that present it, a decision for the installation's operator (remove the number
from all accounts but its owner, `dialer numbers remove`, then migrate again).

`accounts.max_concurrency_ceiling` and `accounts.cps_ceiling`: the most an account's caps may
be (NULL: the settings' defaults).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEST_NUMBER = "+15005550006"


def upgrade() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT c.e164, string_agg(a.name, ', ' ORDER BY c.id) FROM caller_ids c "
                "JOIN accounts a ON a.id = c.account_id WHERE c.e164 <> :test "
                "GROUP BY c.e164 HAVING count(*) > 1 ORDER BY c.e164"
            ),
            {"test": _TEST_NUMBER},
        )
        .all()
    )
    if shared:
        listed = "; ".join(f"{e164} (accounts {names})" for e164, names in shared)
        raise RuntimeError(
            "caller IDs held by more than one account: "
            f"{listed}. Keep each number on the one account that owns it "
            "(`dialer numbers remove NUMBER --account NAME` on the others) and migrate again."
        )
    op.create_index(
        "uq_caller_ids_e164",
        "caller_ids",
        ["e164"],
        unique=True,
        postgresql_where=sa.text(f"e164 <> '{_TEST_NUMBER}'"),
    )
    op.add_column("accounts", sa.Column("max_concurrency_ceiling", sa.Integer(), nullable=True))
    op.add_column("accounts", sa.Column("cps_ceiling", sa.Double(), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "cps_ceiling")
    op.drop_column("accounts", "max_concurrency_ceiling")
    op.drop_index("uq_caller_ids_e164", table_name="caller_ids")
