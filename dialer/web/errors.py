"""One error shape for every refusal: `{"error": {"code", "message"[, "details"]}}`
(`schemas.ErrorBody`), with the status of the `dialer.errors` class raised.

- a `DialerError`: its own status and code (and `Retry-After` when it has one);
- the database drivers' connection errors (SQLAlchemy's and psycopg's, a pool timeout
  included): 503 `database_unavailable` with `Retry-After`;
- redis-py's connection errors and timeouts: 503 `redis_unavailable` with `Retry-After`;
- a body that is not JSON where JSON is expected: 422 `invalid_json`;
- a request FastAPI could not validate: 400 `invalid_body` (the body) or `invalid_request`
  (path, query, headers), with one `details` entry per field;
- Starlette's own HTTP errors (unknown route, wrong method): their status, the reason
  phrase as code (`not_found`, `method_not_allowed`);
- anything else: 500 `internal_error` (Starlette re-raises it after the reply; uvicorn
  logs it).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import psycopg
import redis
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from dialer.errors import (
    DatabaseUnavailableError,
    DialerError,
    RedisUnavailableError,
    UnprocessableError,
)
from dialer.web.schemas import ErrorBody

log = structlog.get_logger(__name__)


Responses = dict[int | str, dict[str, Any]]
"""A route's `responses=`: status (or "default") -> what is sent."""


def declared(description: str) -> dict[str, Any]:
    """A declared error response (`responses=`): the error body, and when it is sent."""
    return {"model": ErrorBody, "description": description}


UNAUTHENTICATED: Responses = {401: declared("No API key, or an unknown one.")}
NOT_FOUND: Responses = {404: declared("No such campaign in this account.")}
INVALID: Responses = {
    400: declared("Bad input: a setting out of bounds, a malformed body or number.")
}
CONFLICT: Responses = {409: declared("The campaign's state does not allow it.")}
CSV_REFUSED: Responses = {422: declared("The CSV is refused as a whole; nothing is written.")}
ANY_OTHER: Responses = {
    "default": declared("Any other error, in the same shape (503 `database_unavailable`).")
}
"""Declared error responses, for the routes' `responses=` (the OpenAPI document)."""


def error_response(error: DialerError, status: int | None = None) -> JSONResponse:
    """The reply that says `error`, with its class's status unless `status` is given."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details:
        body["details"] = error.details
    headers = None
    if error.retry_after_s is not None:
        headers = {"Retry-After": str(error.retry_after_s)}
    return JSONResponse({"error": body}, status_code=status or error.http_status, headers=headers)


async def _dialer_error(_: Request, error: DialerError) -> JSONResponse:
    return error_response(error)


async def _database_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.error("database_unavailable", error=str(error))
    return error_response(DatabaseUnavailableError())


async def _redis_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.error("redis_unavailable", error=str(error))
    return error_response(RedisUnavailableError())


async def _unstorable_value(_: Request, error: Exception) -> JSONResponse:
    # A value the database refuses (a NUL character in text or JSON, a number out of a
    # column's range) that no schema caught: the request's fault, and nothing was written
    # (the request's transaction rolls back).
    log.warning("unstorable_value", error=str(error).splitlines()[0])
    return error_response(
        DialerError("invalid_value", "a value cannot be stored (e.g. a NUL character)")
    )


def request_error(error: RequestValidationError) -> DialerError:
    """What a request FastAPI could not validate is refused with: 422 `invalid_json`, 400
    `invalid_body` or `invalid_request` with one `details` entry per field."""
    problems = error.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return UnprocessableError("invalid_json", "the body is not valid JSON")
    in_body = all(p.get("loc", ("body",))[0] == "body" for p in problems)
    details = [
        {"field": ".".join(map(str, p.get("loc", ()))), "message": str(p.get("msg", "invalid"))}
        for p in problems
    ]
    first = details[0] if details else {"field": "request", "message": "invalid"}
    code = "invalid_body" if in_body else "invalid_request"
    return DialerError(code, f"{first['field']}: {first['message']}", details)


async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(request_error(error))


async def _http_error(_: Request, error: HTTPException) -> JSONResponse:
    code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    response = error_response(DialerError(code, str(error.detail)), error.status_code)
    response.headers.update(error.headers or {})
    return response


async def _internal_error(_: Request, __: Exception) -> JSONResponse:
    # Starlette re-raises the error after this reply, and uvicorn logs it with its traceback.
    return error_response(DialerError("internal_error", "the server failed; try again"), 500)


def install_handlers(app: FastAPI) -> None:
    """Answer every error in the one shape."""
    app.exception_handler(DialerError)(_dialer_error)
    # One handler for the database being down, whichever driver noticed: the ORM (sync
    # handlers) or psycopg on the webhooks' asyncio pool (`PoolTimeout` is a subclass).
    app.exception_handler(sqlalchemy.exc.OperationalError)(_database_unavailable)
    app.exception_handler(psycopg.OperationalError)(_database_unavailable)
    app.exception_handler(redis.ConnectionError)(_redis_unavailable)
    app.exception_handler(redis.TimeoutError)(_redis_unavailable)
    # A master turned replica (a failover seen on a plain, not Sentinel-managed, client).
    app.exception_handler(redis.ReadOnlyError)(_redis_unavailable)
    app.exception_handler(sqlalchemy.exc.DataError)(_unstorable_value)
    app.exception_handler(psycopg.DataError)(_unstorable_value)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(Exception)(_internal_error)
