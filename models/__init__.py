"""SQLAlchemy 2 typed tables, the engine and session factory, and Alembic migrations."""

from models.base import Base, utcnow
from models.db import (
    engine_for,
    ensure_database,
    on_commit,
    relax_durability,
    session_factory,
    transaction,
)
from models.enums import (
    LIVE_ATTEMPT_STATUSES,
    TERMINAL_ATTEMPT_STATUSES,
    AttemptStatus,
    CampaignStatus,
    EndReason,
    JobStatus,
    MachineAction,
    Outcome,
)
from models.tables import (
    Account,
    CallAttempt,
    CallerId,
    CallJob,
    Campaign,
    CampaignCounter,
    CampaignMinute,
    DncEntry,
    ProviderEvent,
)

__all__ = [
    "LIVE_ATTEMPT_STATUSES",
    "TERMINAL_ATTEMPT_STATUSES",
    "Account",
    "AttemptStatus",
    "Base",
    "CallAttempt",
    "CallJob",
    "CallerId",
    "Campaign",
    "CampaignCounter",
    "CampaignMinute",
    "CampaignStatus",
    "DncEntry",
    "EndReason",
    "JobStatus",
    "MachineAction",
    "Outcome",
    "ProviderEvent",
    "engine_for",
    "ensure_database",
    "on_commit",
    "relax_durability",
    "session_factory",
    "transaction",
    "utcnow",
]
