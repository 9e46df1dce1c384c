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
    ApiKey,
    CallAttempt,
    CallerId,
    CallJob,
    Campaign,
    DncEntry,
    IdempotencyKey,
    ProviderEvent,
)

__all__ = [
    "LIVE_ATTEMPT_STATUSES",
    "TERMINAL_ATTEMPT_STATUSES",
    "Account",
    "ApiKey",
    "AttemptStatus",
    "Base",
    "CallAttempt",
    "CallJob",
    "CallerId",
    "Campaign",
    "CampaignStatus",
    "DncEntry",
    "EndReason",
    "IdempotencyKey",
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
