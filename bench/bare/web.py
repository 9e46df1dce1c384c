"""The bare pipeline's status webhook: `uvicorn bench.bare.web:app`.

Verifies `X-Twilio-Signature` over the URL and the form, then one guarded UPDATE: the call's
status as the callback says, unless the call already has a final one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, Response
from psycopg_pool import AsyncConnectionPool
from twilio.request_validator import RequestValidator

from bench.bare import FINAL_STATUSES

POOL_SIZE = 16
"""Connections, opened at start-up and kept: more than the callbacks in flight at once."""

validator = RequestValidator(os.environ["BARE_AUTH_TOKEN"])
pool = AsyncConnectionPool(
    os.environ["BARE_LIBPQ_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE, open=False
)


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    await pool.open(wait=True)
    yield
    await pool.close()


app = FastAPI(lifespan=_lifespan)

_UPDATE = """
UPDATE bare_calls SET status = %s, duration_s = coalesce(%s, duration_s), updated_at = now()
WHERE id = %s AND call_sid = %s AND status <> ALL(%s)
"""


@app.post("/status/{call_id}", status_code=204)
async def status(call_id: int, request: Request) -> Response:
    form = await request.form()
    params = {key: str(value) for key, value in form.items()}
    signature = request.headers.get("X-Twilio-Signature", "")
    if not validator.validate(str(request.url), params, signature):
        raise HTTPException(403, "invalid signature")
    duration = params.get("CallDuration")
    async with pool.connection() as conn:
        await conn.execute(
            _UPDATE,
            (
                params["CallStatus"],
                int(duration) if duration else None,
                call_id,
                params["CallSid"],
                list(FINAL_STATUSES),
            ),
        )
    return Response(status_code=204)


@app.get("/healthz")
async def health() -> dict[str, str]:
    return {"status": "ok"}
