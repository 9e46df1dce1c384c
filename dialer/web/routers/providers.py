"""The provider webhooks: Twilio's status, AMD, gather and recording callbacks for one
attempt.

The fast path of the API: no ORM session and no dependency, only the signature check on the
form body, then the callback joins the process's next batch
(`dialer.dispatch.callbacks.CallbackBatcher` over `models.asyncdb`: one transaction for
the callbacks that arrive together). Twilio retries a delivery that got a 5xx, so a
database outage loses nothing (503, see `dialer.web.errors`).
"""

from __future__ import annotations

from functools import cached_property
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from twilio.request_validator import RequestValidator

from dialer.dispatch.callbacks import BATCHES_IN_FLIGHT, CallbackBatcher, CallbackKind
from dialer.dispatch.dialing import CONNECTION_OVERRIDES
from dialer.errors import ForbiddenError
from dialer.logs import bind_context
from dialer.metrics import CALLBACK_SECONDS, CALLBACKS, observe_callback_lag
from dialer.runtime import Runtime
from dialer.web.deps import RowId
from dialer.web.errors import ANY_OTHER, INVALID, declared
from models.asyncdb import AsyncPool, async_pool
from workers.enqueue import drop_voicemail, hang_up, resolve_late_call

WEBHOOK_POOL_SIZE = BATCHES_IN_FLIGHT + 1
"""PostgreSQL connections per API process for the provider webhooks: one per batch the
callback batcher applies at once, and one for a retry after a broken connection."""

_FORM = "application/x-www-form-urlencoded"


class Webhooks:
    """What the provider webhooks reuse across requests: the signature validator, the
    asyncio connection pool and the callback batcher, built on first use (in the serving
    event loop). `create_app` puts one on `app.state.webhooks`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._pool: AsyncPool | None = None
        self._batcher: CallbackBatcher | None = None

    @cached_property
    def public_base_url(self) -> str:
        return self.runtime.settings.public_base_url

    @cached_property
    def validator(self) -> RequestValidator:
        return RequestValidator(self.runtime.settings.twilio_auth_token.get_secret_value())

    def pool(self) -> AsyncPool:
        if self._pool is None:
            self._pool = async_pool(self.runtime.settings.database_url, WEBHOOK_POOL_SIZE)
        return self._pool

    def batcher(self) -> CallbackBatcher:
        if self._batcher is None:
            self._batcher = CallbackBatcher(self.pool(), self.runtime)
        return self._batcher


router = APIRouter(
    prefix="/v1/providers/twilio",
    tags=["provider webhooks"],
    responses={
        **INVALID,
        403: declared("`X-Twilio-Signature` does not match (`invalid_signature`)."),
        404: declared("No call attempt has this id."),
        503: declared("The database is unavailable; Twilio retries the delivery."),
        **ANY_OTHER,
    },
)


async def _form_fields(request: Request) -> dict[str, str]:
    """A form-encoded body's fields (the last value of a repeated one, as Starlette's form
    does); any other body has none. Twilio posts `application/x-www-form-urlencoded`."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != _FORM:
        return {}
    body = await request.body()
    return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))


async def _callback(request: Request, attempt_id: int, kind: CallbackKind) -> Response:
    webhooks: Webhooks = request.app.state.webhooks
    bind_context(attempt_id=attempt_id)
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
            raise ForbiddenError("invalid_signature", "X-Twilio-Signature does not match")
        retried = request.query_params.get("retry") == "1"
        result = await webhooks.batcher().record(attempt_id, kind, params, retried=retried)
        CALLBACKS.labels(kind.value, "stored" if result.stored else "duplicate").inc()
        if result.stored:
            observe_callback_lag(kind.value, params.get("Timestamp"))
        if result.hang_up_machine:
            hang_up(attempt_id, "machine")
        if result.hang_up_canceled:
            hang_up(attempt_id, "campaign_canceled")
        if result.drop_voicemail:
            drop_voicemail(attempt_id)
        if result.late_call:
            resolve_late_call(attempt_id, result.late_call)
    if result.reply is not None:
        return Response(result.reply, media_type="application/xml")
    return Response(status_code=204)


@router.post("/status/{attempt_id}", status_code=204, response_class=Response)
async def status_callback(request: Request, attempt_id: RowId) -> Response:
    """A call progress event (`StatusCallback`)."""
    return await _callback(request, attempt_id, CallbackKind.STATUS)


@router.post("/amd/{attempt_id}", status_code=204, response_class=Response)
async def amd_callback(request: Request, attempt_id: RowId) -> Response:
    """The asynchronous answering machine detection result (`AsyncAmdStatusCallback`)."""
    return await _callback(request, attempt_id, CallbackKind.AMD)


@router.post(
    "/gather/{attempt_id}",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}}, "description": "TwiML: the key's action."}
    },
)
async def gather_callback(request: Request, attempt_id: RowId) -> Response:
    """The key pressed at the menu (`Digits`); answers with the TwiML of its action
    (`dialer.menu`): a goodbye, the message again, a transfer; an opt-out lists the number
    on the account's do-not-call list before the answer. `?retry=1`: an invalid key was
    pressed once already."""
    return await _callback(request, attempt_id, CallbackKind.GATHER)


@router.post("/recording/{attempt_id}", status_code=204, response_class=Response)
async def recording_callback(request: Request, attempt_id: RowId) -> Response:
    """The call's recording (`RecordingStatusCallback`): on `completed`, its `RecordingSid`,
    `RecordingUrl` and `RecordingDuration` are kept on the attempt."""
    return await _callback(request, attempt_id, CallbackKind.RECORDING)
