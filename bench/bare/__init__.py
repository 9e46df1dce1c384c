"""The bare pipeline: the reference `bench/dispatch.py` measures the dialer against.

The simplest correct thing a user would write with the dialer's packages (Celery on Redis,
SQLAlchemy on psycopg, the Twilio SDK, FastAPI on uvicorn) to call a list of numbers, with
no pool, pacer, state machine, counters or outbox:

- `bench.bare.worker`: a Celery task per contact, rate limited to the CPS limit by Celery
  (`rate_limit`), that locks the contact's row, creates the call with the Twilio SDK (one
  client per worker process) and stores the call sid;
- `bench.bare.web`: a FastAPI route that verifies the Twilio signature and applies each of
  the call's status callbacks with one guarded UPDATE that never overwrites a final status.

Its one table, `bare_calls`, is a contact and its call in one row. Both processes read
their settings from the environment (`BARE_*`), and size their database pools so that no
connection is opened and closed mid-run (a backend that exits mid-run would take its CPU
out of the `/proc` accounting, and costs a fork and an authentication).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text, func

FINAL_STATUSES = ("completed", "busy", "no-answer", "failed", "canceled")
"""Twilio `CallStatus` values after which a call changes no more."""

metadata = MetaData()
calls = Table(
    "bare_calls",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("phone", Text, nullable=False),
    Column("first_name", Text, nullable=False),
    Column("call_sid", Text, unique=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("duration_s", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
