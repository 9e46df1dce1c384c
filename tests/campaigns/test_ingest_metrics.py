"""Ingest counts its rows by result in `dialer_ingest_rows_total` (accepted, or the reason)."""

from __future__ import annotations

from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from tests.campaigns.test_ingest import HEADER, run

RESULTS = ("accepted", "invalid_number", "duplicate", "emergency_or_short_code")


def rows(result: str) -> float:
    return REGISTRY.get_sample_value("dialer_ingest_rows_total", {"result": result}) or 0.0


def test_rows_are_counted_by_result(db_session: Session) -> None:
    before = {result: rows(result) for result in RESULTS}
    data = HEADER + "Ada,212-555-0143,A\nBob,212-555-0143,B\nCy,12,C\nDi,911,D\nEd,212-555-0144,E\n"
    summary = run(db_session, data)
    counted = {result: rows(result) - n for result, n in before.items()}
    assert counted == dict(zip(RESULTS, (2, 1, 1, 1), strict=True))
    assert (summary.accepted, sum(summary.rejected.values())) == (2, 3)
