"""The HTTP API (FastAPI, served by uvicorn): campaigns, DNC, and the provider webhooks.

Handlers are thin: authenticate, open one transaction, call one service function, map its
errors to `{"error": {"code", "message"}}` with the error's HTTP status. The entry points
(this app and the CLI) are the top layer: they may import `campaigns` and `workers`.
"""

# No `from __future__ import annotations`: FastAPI resolves string annotations in the
# module's globals, where the `account` and `session` dependencies (closures of
# `create_app`) are not, so `me` and `db` would be read as required query parameters.
import tempfile
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Annotated, Any
from urllib.parse import parse_qsl

import psycopg
import structlog
from fastapi import Depends, FastAPI, Form, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from twilio.request_validator import RequestValidator

from campaigns import dnc, lifecycle
from campaigns.accounts import account_by_api_key
from campaigns.csvsource import IngestError
from campaigns.reports import campaign_report, export_results
from dialer.dispatch.callbacks import CallbackKind, record_callback
from dialer.dispatch.dialing import CONNECTION_OVERRIDES
from dialer.errors import DialerError, NotFoundError
from dialer.runtime import Runtime, get_runtime
from models import Account, Campaign, CampaignStatus, MachineAction, on_commit, transaction
from models.asyncdb import AsyncPool, async_pool
from workers.enqueue import hang_up, kick_pacer, resolve_late_call

log = structlog.get_logger(__name__)

CALLBACKS = Counter(
    "dialer_provider_callbacks_total", "Provider callbacks by kind and result", ["kind", "result"]
)
CALLBACK_SECONDS = Histogram("dialer_provider_callback_seconds", "Callback handling time")
GATHER_REPLY = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Thank you. Goodbye.</Say></Response>'
)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The ASGI app. `runtime` defaults to this process's (`get_runtime()`)."""
    app = FastAPI(title="Campaign dialer", version="0.1.0")

    def rt() -> Runtime:
        return runtime or get_runtime()

    # Dependencies are used with scope="function": the transaction commits (and runs its
    # on_commit hooks) before the reply is sent, so a 2xx means the change is committed
    # and a failed commit is not answered with 2xx.
    def session() -> Iterator[Session]:
        with transaction(rt().settings.database_url) as s:
            yield s

    def account(
        db: Annotated[Session, Depends(session, scope="function")],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Account:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise DialerError("unauthenticated", "send Authorization: Bearer <api key>")
        return account_by_api_key(db, key)

    @app.exception_handler(DialerError)
    async def dialer_error(_: Request, error: DialerError) -> JSONResponse:
        status = 401 if error.code in ("unauthenticated", "unknown_api_key") else error.http_status
        return JSONResponse(error_body(error.code, error.message), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = error.errors()
        in_body = all(e.get("loc", ("body",))[0] == "body" for e in errors)
        first = errors[0] if errors else {}
        where = ".".join(map(str, first.get("loc", ())))
        code = "invalid_body" if in_body else "invalid_request"
        return JSONResponse(
            error_body(code, f"{where}: {first.get('msg', 'invalid')}"), status_code=400
        )

    @app.exception_handler(IngestError)
    async def ingest_error(_: Request, error: IngestError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message), status_code=422)

    @app.exception_handler(OperationalError)
    async def database_down(_: Request, error: OperationalError) -> JSONResponse:
        log.error("database_unavailable", error=str(error.orig))
        return JSONResponse(
            error_body("database_unavailable", "try again shortly"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # --- provider webhooks -------------------------------------------------------------

    webhooks = _Webhooks(rt)

    @app.exception_handler(psycopg.OperationalError)
    async def database_down_async(_: Request, error: psycopg.OperationalError) -> JSONResponse:
        log.error("database_unavailable", error=str(error))
        return JSONResponse(
            error_body("database_unavailable", "try again shortly"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    async def _callback(request: Request, attempt_id: int, kind: CallbackKind) -> Response:
        with CALLBACK_SECONDS.time():
            params = await _form_fields(request)
            url = webhooks.public_base_url + request.url.path
            if request.url.query:
                url += "?" + request.url.query
            signature = request.headers.get("X-Twilio-Signature", "")
            # The URL we gave Twilio carries the connection overrides, which Twilio signs.
            if not signature or not any(
                webhooks.validator.validate(candidate, params, signature)
                for candidate in (url + CONNECTION_OVERRIDES, url)
            ):
                CALLBACKS.labels(kind.value, "forged").inc()
                return JSONResponse(
                    error_body("invalid_signature", "X-Twilio-Signature does not match"),
                    status_code=403,
                )
            result = await record_callback(webhooks.pool(), rt(), attempt_id, kind, params)
            CALLBACKS.labels(kind.value, "stored" if result.stored else "duplicate").inc()
            if result.hang_up_machine:
                hang_up(attempt_id, "machine")
            if result.late_call:
                resolve_late_call(attempt_id, result.late_call)
        if kind is CallbackKind.GATHER:
            return Response(GATHER_REPLY, media_type="application/xml")
        return Response(status_code=204)

    @app.post("/v1/providers/twilio/status/{attempt_id}")
    async def status_callback(request: Request, attempt_id: int) -> Response:
        return await _callback(request, attempt_id, CallbackKind.STATUS)

    @app.post("/v1/providers/twilio/amd/{attempt_id}")
    async def amd_callback(request: Request, attempt_id: int) -> Response:
        return await _callback(request, attempt_id, CallbackKind.AMD)

    @app.post("/v1/providers/twilio/gather/{attempt_id}")
    async def gather_callback(request: Request, attempt_id: int) -> Response:
        return await _callback(request, attempt_id, CallbackKind.GATHER)

    # --- campaigns -----------------------------------------------------------------------

    @app.post("/v1/campaigns", status_code=201)
    def create_campaign(
        me: Annotated[Account, Depends(account, scope="function")],
        file: UploadFile,
        name: Annotated[str, Form()],
        message: Annotated[str, Form()] = lifecycle.DEFAULT_MESSAGE,
        from_number: Annotated[str | None, Form()] = None,
        default_region: Annotated[str, Form()] = "US",
        phone_column: Annotated[str | None, Form()] = None,
        max_concurrency: Annotated[int, Form()] = 10,
        cps: Annotated[float | None, Form()] = None,
        max_attempts: Annotated[int, Form()] = 3,
        max_hold_s: Annotated[int | None, Form()] = None,
        machine_detection: Annotated[bool, Form()] = False,
        machine_action: Annotated[MachineAction, Form()] = MachineAction.HANG_UP,
        gather_dtmf: Annotated[bool, Form()] = False,
        priority: Annotated[int, Form()] = 0,
    ) -> dict[str, Any]:
        options = lifecycle.CampaignOptions(
            name=name,
            message=message,
            from_number=from_number,
            default_region=default_region,
            phone_column=phone_column,
            max_concurrency=max_concurrency,
            cps=cps,
            max_attempts=max_attempts,
            max_hold_s=max_hold_s,
            machine_detection=machine_detection,
            machine_action=machine_action,
            gather_dtmf=gather_dtmf,
            priority=priority,
        )
        settings = rt().settings
        imported = lifecycle.import_campaign(
            settings.database_url, settings.data_dir, me.id, options, file.file
        )
        return imported.to_json()

    @app.get("/v1/campaigns")
    def list_campaigns(
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
    ) -> list[dict[str, Any]]:
        rows = db.scalars(
            select(Campaign).where(Campaign.account_id == me.id).order_by(Campaign.id)
        )
        return [_campaign_json(c) for c in rows]

    @app.get("/v1/campaigns/{campaign_id}")
    def get_campaign(
        campaign_id: int,
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
    ) -> dict[str, Any]:
        return _campaign_json(lifecycle.get_campaign(db, me.id, campaign_id))

    @app.get("/v1/campaigns/{campaign_id}/report")
    def report(
        campaign_id: int,
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
    ) -> dict[str, Any]:
        return campaign_report(db, me.id, campaign_id).model_dump()

    @app.get("/v1/campaigns/{campaign_id}/rejected.csv")
    def rejected_csv(
        campaign_id: int,
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
    ) -> FileResponse:
        lifecycle.get_campaign(db, me.id, campaign_id)
        path = rt().settings.data_dir / "rejected" / f"campaign-{campaign_id}-rejected.csv"
        if not path.exists():
            raise NotFoundError("no_rejected_rows", f"campaign {campaign_id} rejected no rows")
        return FileResponse(path, media_type="text/csv", filename=path.name)

    @app.get("/v1/campaigns/{campaign_id}/results.csv")
    def results_csv(
        campaign_id: int,
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
    ) -> StreamingResponse:
        # Spooled to disk past 1 MB: a million-contact export never sits in memory.
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115  # closed by the response
            max_size=1_000_000, mode="w+", newline="", encoding="utf-8"
        )
        export_results(db, me.id, campaign_id, spool)
        spool.seek(0)
        return StreamingResponse(
            iter(lambda: spool.read(65536), ""),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-results.csv"'
            },
            background=BackgroundTask(spool.close),
        )

    for action in ("start", "pause", "resume", "cancel"):
        _add_transition(app, action, account, session)

    # --- do-not-call -------------------------------------------------------------------

    @app.post("/v1/dnc")
    def dnc_add(
        body: dict[str, Any],
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
    ) -> dict[str, int]:
        numbers = body.get("numbers")
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise DialerError("invalid_body", 'send {"numbers": ["+12125550143", ...]}')
        region = str(body.get("default_region", "US"))
        return {"added": dnc.add(db, me.id, numbers, region, reason=body.get("reason"))}

    @app.post("/v1/dnc/import")
    def dnc_import(
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
        file: UploadFile,
        default_region: Annotated[str, Form()] = "US",
    ) -> dict[str, Any]:
        return dnc.import_csv(db, me.id, file.file, default_region).to_json()

    @app.delete("/v1/dnc/{e164}")
    def dnc_remove(
        e164: str,
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
    ) -> dict[str, int]:
        return {"removed": dnc.remove(db, me.id, [e164], "US")}

    return app


WEBHOOK_POOL_SIZE = 10
"""PostgreSQL connections per API process for the provider webhooks: at least the callbacks
one process has in flight at once (16 in flight over 2 workers in `bench/callbacks.py`),
so none waits for a connection; 2 workers x 10 stays well under `max_connections` (100)."""

_FORM = "application/x-www-form-urlencoded"


class _Webhooks:
    """What the provider webhooks reuse across requests: the signature validator and the
    asyncio connection pool, built on first use (the pool in the serving event loop)."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        self._pool: AsyncPool | None = None

    @cached_property
    def public_base_url(self) -> str:
        return self._runtime().settings.public_base_url

    @cached_property
    def validator(self) -> RequestValidator:
        return RequestValidator(self._runtime().settings.twilio_auth_token.get_secret_value())

    def pool(self) -> AsyncPool:
        if self._pool is None:
            self._pool = async_pool(self._runtime().settings.database_url, WEBHOOK_POOL_SIZE)
        return self._pool


async def _form_fields(request: Request) -> dict[str, str]:
    """A form-encoded body's fields (the last value of a repeated one, as Starlette's form
    does); any other body has none. Twilio posts `application/x-www-form-urlencoded`."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != _FORM:
        return {}
    body = await request.body()
    return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))


def _add_transition(app: FastAPI, action: str, account: Any, session: Any) -> None:
    service = getattr(lifecycle, action)

    def transition(
        campaign_id: int,
        me: Annotated[Account, Depends(account, scope="function")],
        db: Annotated[Session, Depends(session, scope="function")],
    ) -> dict[str, Any]:
        campaign = service(db, me.id, campaign_id)
        if campaign.status is CampaignStatus.RUNNING:
            on_commit(db, lambda: kick_pacer(campaign.account_id))
        return _campaign_json(campaign)

    app.post(f"/v1/campaigns/{{campaign_id}}/{action}", name=f"campaign_{action}")(transition)


def _campaign_json(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status.value,
        "status_reason": campaign.status_reason,
        "max_concurrency": campaign.max_concurrency,
        "cps": campaign.cps,
        "max_attempts": campaign.max_attempts,
        "ingest": campaign.ingest_summary,
        "created_at": campaign.created_at.isoformat() if campaign.created_at else None,
    }
