"""Migration 0009's module, which builds the counting triggers' SQL, for the migrations
that rebuild those triggers (0010, 0011). Migration files are loaded by path: their names
(a date first) are not importable."""

from __future__ import annotations

from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType

from alembic import op

COUNTERS_MIGRATION = Path(__file__).with_name("versions") / "2026_11_22_0900-campaign_counters.py"


def counters_migration() -> ModuleType:
    """Migration 0009's module (`_trigger_function`, `_recount_functions` and the SQL
    they are built from)."""
    spec = spec_from_file_location("dialer_migration_0009", COUNTERS_MIGRATION)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rebuild_update_triggers(changed_only: bool) -> None:
    """Replace both tables' UPDATE counting triggers with migration 0009's, built with
    `changed_only` (count only the rows whose counted columns changed: migration 0010)."""
    counters = counters_migration()
    for table in ("call_jobs", "call_attempts"):
        op.execute(f"DROP TRIGGER count_update ON {table}")
        op.execute(f"DROP FUNCTION dialer_count_{table}_update()")
        op.execute(counters._trigger_function(table, "UPDATE", changed_only=changed_only))
