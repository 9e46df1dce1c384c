"""Migration 0009's module, which builds the counting triggers' SQL, for the migrations
that rebuild those triggers (0010, 0011). Migration files are loaded by path: their names
(a date first) are not importable."""

from __future__ import annotations

from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType

COUNTERS_MIGRATION = Path(__file__).with_name("versions") / "2026_11_22_0900-campaign_counters.py"


def counters_migration() -> ModuleType:
    """Migration 0009's module (`_trigger_function`, `_recount_functions` and the SQL
    they are built from)."""
    spec = spec_from_file_location("dialer_migration_0009", COUNTERS_MIGRATION)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
