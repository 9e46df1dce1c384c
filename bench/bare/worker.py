"""The bare pipeline's Celery worker: `celery -A bench.bare.worker worker`.

Celery's defaults (early acks, no task events, no results), one task, rate limited to the
CPS limit (`BARE_CPS` per second, Celery's token bucket in the worker).
"""

from __future__ import annotations

import os

from celery import Celery
from sqlalchemy import create_engine, select, update
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from bench.bare import calls
from dialer.providers.twilio import BaseUrlHttpClient

app = Celery("bare", broker=os.environ["BARE_REDIS_URL"])
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)

# Created lazily on first use, so each prefork child has its own connection.
engine = create_engine(os.environ["BARE_DATABASE_URL"], pool_size=1, max_overflow=0)
# The SDK's HTTP client keeps one `requests.Session` (keep-alive) per process; its base URL
# sends the requests to the simulator instead of api.twilio.com.
client = Client(
    os.environ["BARE_ACCOUNT_SID"],
    os.environ["BARE_AUTH_TOKEN"],
    http_client=BaseUrlHttpClient(os.environ["BARE_TWILIO_BASE_URL"], 10.0),
)
CALLBACK_BASE = os.environ["BARE_PUBLIC_BASE_URL"]
FROM = os.environ["BARE_CALLER_ID"]


@app.task(name="bare.dial", rate_limit=f"{os.environ['BARE_CPS']}/s")
def dial(call_id: int) -> None:
    """Call the contact `call_id` once: lock its row, create the call, store its sid."""
    with engine.begin() as conn:
        row = conn.execute(
            select(calls.c.phone, calls.c.first_name, calls.c.call_sid)
            .where(calls.c.id == call_id)
            .with_for_update()
        ).one()
        if row.call_sid is not None:
            return
        twiml = VoiceResponse()
        twiml.say(f"Hello {row.first_name}.")
        call = client.calls.create(
            to=row.phone,
            from_=FROM,
            twiml=str(twiml),
            status_callback=f"{CALLBACK_BASE}/status/{call_id}",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            status_callback_method="POST",
        )
        conn.execute(
            update(calls).where(calls.c.id == call_id).values(call_sid=call.sid, status=call.status)
        )
