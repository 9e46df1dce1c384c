"""The simulator's HTTP face: Twilio REST API v2010 for calls, plus `/_sim/*` controls.

Twilio endpoints (Basic auth with the configured account SID and auth token; errors in
Twilio's body `{"code", "message", "more_info", "status"}`):
- `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` create (form-encoded) -> 201 call;
- `GET  /2010-04-01/Accounts/{AccountSid}/Calls.json` list, Twilio's paging envelope;
- `GET  /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json` fetch;
- `POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json` update (`Status` hangs up);
- `GET  /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json` and
  `.../OutgoingCallerIds.json` list the configured owned and verified numbers
  (`owned_numbers`, `verified_caller_ids`), filtered by `PhoneNumber`.

Controls (no auth; loopback tool): `GET /_sim/stats`, `POST /_sim/reset`,
`GET|POST /_sim/config` (JSON partial update, see `SimulatorConfigUpdate`), `GET /_sim/calls`,
`GET /_sim/timeline`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from dialer.simulator.config import Fault, SimulatorConfig, SimulatorConfigUpdate
from dialer.simulator.engine import (
    API_VERSION,
    ApiError,
    Engine,
    ListFilter,
    day_range,
    parse_time_bound,
    rfc2822,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_FILTER_KEYS = (
    "To",
    "From",
    "ParentCallSid",
    "Status",
    "StartTime",
    "StartTime<",
    "StartTime>",
    "EndTime",
    "EndTime<",
    "EndTime>",
)


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def _check_auth(request: Request, config: SimulatorConfig, account_sid: str) -> None:
    """Basic auth as Twilio checks it: 401 code 20003 for missing or wrong credentials,
    404 code 20404 for another account's path."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    username = password = ""
    if scheme.lower() == "basic":
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            username = password = ""
    valid = hmac.compare_digest(username, config.account_sid) and hmac.compare_digest(
        password, config.auth_token
    )
    if not valid:
        raise ApiError(401, 20003, "Authenticate")
    if account_sid != config.account_sid:
        raise ApiError(
            404,
            20404,
            f"The requested resource /{API_VERSION}/Accounts/{account_sid} was not found",
        )


def _list_filter(query: dict[str, str]) -> ListFilter:
    """Build the list filter from query parameters.

    Raises:
        ApiError: 400 code 20001 for a malformed date.
    """
    try:
        return ListFilter(
            to=query.get("To"),
            from_=query.get("From"),
            status=query.get("Status"),
            parent_call_sid=query.get("ParentCallSid"),
            start_on=day_range(query["StartTime"]) if "StartTime" in query else None,
            start_after=parse_time_bound(query["StartTime>"], upper=False)
            if "StartTime>" in query
            else None,
            start_before=parse_time_bound(query["StartTime<"], upper=True)
            if "StartTime<" in query
            else None,
            end_on=day_range(query["EndTime"]) if "EndTime" in query else None,
            end_after=parse_time_bound(query["EndTime>"], upper=False)
            if "EndTime>" in query
            else None,
            end_before=parse_time_bound(query["EndTime<"], upper=True)
            if "EndTime<" in query
            else None,
        )
    except ValueError as exc:
        raise ApiError(400, 20001, f"Invalid date filter: {exc}") from None


def _page_number(raw: str | None, *, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        return min(max(int(raw), low), high)
    except ValueError:
        raise ApiError(400, 20001, f"Invalid paging parameter: {raw}") from None


def _number_json(account_sid: str, resource: str, e164: str) -> dict[str, Any]:
    """One owned number or verified caller ID, in the fields Twilio's resource has; the
    sid is derived from the number so it is stable."""
    prefix = "PN"
    sid = prefix + hashlib.sha256(f"{resource}:{e164}".encode()).hexdigest()[:32]
    uri = f"/{API_VERSION}/Accounts/{account_sid}/{resource}/{sid}.json"
    created = rfc2822(datetime(2020, 1, 1, tzinfo=UTC))
    body: dict[str, Any] = {
        "account_sid": account_sid,
        "date_created": created,
        "date_updated": created,
        "friendly_name": e164,
        "phone_number": e164,
        "sid": sid,
        "uri": uri,
    }
    if resource == "IncomingPhoneNumbers":
        body.update(
            {
                "api_version": API_VERSION,
                "capabilities": {"voice": True, "sms": False, "mms": False, "fax": False},
                "origin": "twilio",
                "status": "in-use",
            }
        )
    return body


def create_app(config: SimulatorConfig) -> FastAPI:
    """The simulator as an ASGI app; its `Engine` is `app.state.engine`, started by the
    app's lifespan (so serve it with lifespan on, as uvicorn does by default)."""
    engine = Engine(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="Carrier simulator (Twilio REST API v2010, calls)", lifespan=lifespan)
    app.state.engine = engine
    prefix = f"/{API_VERSION}/Accounts/{{account_sid}}"

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return _error(exc)

    @app.post(prefix + "/Calls.json")
    async def create_call(account_sid: str, request: Request) -> Response:
        _check_auth(request, engine.config, account_sid)
        form = await request.form()
        fields = {key: [str(value) for value in form.getlist(key)] for key in form}
        call, fault = await engine.create_call(fields)
        if fault is Fault.AFTER_502:
            return _error(ApiError(502, 20500, "Bad Gateway"))
        if fault is Fault.SLOW:
            await asyncio.sleep(engine.config.slow_delay_s)
        return JSONResponse(call.to_json(), status_code=201)

    @app.get(prefix + "/Calls.json")
    async def list_calls(account_sid: str, request: Request) -> Response:
        _check_auth(request, engine.config, account_sid)
        query = dict(request.query_params)
        filters = _list_filter(query)
        page_size = _page_number(
            query.get("PageSize"), default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE
        )
        page = _page_number(query.get("Page"), default=0, low=0, high=10**9)
        calls = engine.list_calls(filters)
        token = query.get("PageToken")
        if token and token.startswith("PA"):
            # The token names the last call of the previous page: stable under new creates.
            after = next((i for i, call in enumerate(calls) if call.sid == token[2:]), None)
            first = 0 if after is None else after + 1
        else:
            first = page * page_size
        items = calls[first : first + page_size]
        base = f"/{API_VERSION}/Accounts/{account_sid}/Calls.json"
        kept = {key: query[key] for key in _FILTER_KEYS if key in query}

        def uri(extra: dict[str, str]) -> str:
            return f"{base}?{urlencode({**kept, 'PageSize': str(page_size), **extra})}"

        more = first + page_size < len(calls) and bool(items)
        body: dict[str, Any] = {
            "calls": [call.to_json() for call in items],
            "end": first + max(len(items) - 1, 0),
            "first_page_uri": uri({"Page": "0"}),
            "next_page_uri": uri({"Page": str(page + 1), "PageToken": "PA" + items[-1].sid})
            if more
            else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri({"Page": str(page - 1)}) if page > 0 else None,
            "start": first,
            "uri": f"{base}?{request.url.query}" if request.url.query else base,
        }
        return JSONResponse(body)

    @app.get(prefix + "/Calls/{sid}.json")
    async def fetch_call(account_sid: str, sid: str, request: Request) -> Response:
        _check_auth(request, engine.config, account_sid)
        return JSONResponse(engine.fetch_call(sid).to_json())

    @app.post(prefix + "/Calls/{sid}.json")
    async def update_call(account_sid: str, sid: str, request: Request) -> Response:
        _check_auth(request, engine.config, account_sid)
        form = await request.form()
        status, twiml = form.get("Status"), form.get("Twiml")
        call = engine.update_call(
            sid,
            str(status) if status is not None else None,
            str(twiml) if twiml is not None else None,
        )
        return JSONResponse(call.to_json())

    def number_list(request: Request, account_sid: str, resource: str) -> dict[str, Any]:
        """Twilio's list envelope over the configured numbers (one page, `PageSize` long)."""
        query = dict(request.query_params)
        page_size = _page_number(
            query.get("PageSize"), default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE
        )
        config = engine.config
        numbers = (
            config.owned_numbers
            if resource == "IncomingPhoneNumbers"
            else (config.verified_caller_ids)
        )
        wanted = query.get("PhoneNumber")
        matching = [n for n in numbers if wanted is None or n == wanted][:page_size]
        base = f"/{API_VERSION}/Accounts/{account_sid}/{resource}.json"
        kept = {"PhoneNumber": wanted} if wanted is not None else {}
        first_page = f"{base}?{urlencode({**kept, 'PageSize': str(page_size), 'Page': '0'})}"
        items = [_number_json(account_sid, resource, number) for number in matching]
        key = (
            "incoming_phone_numbers"
            if resource == "IncomingPhoneNumbers"
            else ("outgoing_caller_ids")
        )
        return {
            key: items,
            "end": max(len(items) - 1, 0),
            "first_page_uri": first_page,
            "next_page_uri": None,
            "page": 0,
            "page_size": page_size,
            "previous_page_uri": None,
            "start": 0,
            "uri": f"{base}?{request.url.query}" if request.url.query else base,
        }

    @app.get(prefix + "/IncomingPhoneNumbers.json")
    async def incoming_phone_numbers(account_sid: str, request: Request) -> Response:
        _check_auth(request, engine.config, account_sid)
        return JSONResponse(number_list(request, account_sid, "IncomingPhoneNumbers"))

    @app.get(prefix + "/OutgoingCallerIds.json")
    async def outgoing_caller_ids(account_sid: str, request: Request) -> Response:
        _check_auth(request, engine.config, account_sid)
        return JSONResponse(number_list(request, account_sid, "OutgoingCallerIds"))

    @app.get("/_sim/stats")
    async def stats() -> dict[str, Any]:
        return engine.stats()

    @app.post("/_sim/reset")
    async def reset() -> dict[str, Any]:
        await engine.reset()
        return engine.stats()

    @app.get("/_sim/config")
    async def get_config() -> dict[str, Any]:
        return engine.config.model_dump(mode="json", exclude={"auth_token"})

    @app.post("/_sim/config")
    async def set_config(request: Request) -> Response:
        try:
            update = SimulatorConfigUpdate.model_validate_json(await request.body())
            engine.config = update.apply(engine.config)
        except ValidationError as exc:
            return JSONResponse(
                {"errors": json.loads(exc.json(include_url=False))}, status_code=422
            )
        return JSONResponse(engine.config.model_dump(mode="json", exclude={"auth_token"}))

    @app.get("/_sim/timeline")
    async def timeline() -> dict[str, Any]:
        return engine.timeline()

    @app.get("/_sim/calls")
    async def debug_calls(limit: int = 1000) -> list[dict[str, Any]]:
        calls = engine.list_calls(ListFilter())[: max(limit, 0)]
        return [
            {**call.to_json(), "outcome": call.outcome.value, "log": call.log} for call in calls
        ]

    return app
