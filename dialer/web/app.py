"""The HTTP API (FastAPI, served by uvicorn): campaigns, DNC, the provider webhooks, health.

One `APIRouter` per domain (`dialer.web.routers`), request and response models in
`dialer.web.schemas`, the runtime, the transaction and the caller's account as dependencies
(`dialer.web.deps`), and one error shape (`dialer.web.errors`). Handlers are thin:
authenticate, call one service function in the request's transaction, answer with a schema.
The entry points (this app and the CLI) are the top layer: they may import `campaigns` and
`workers`.
"""

from __future__ import annotations

from fastapi import FastAPI

from dialer.runtime import Runtime, get_runtime
from dialer.web.context import RequestContext
from dialer.web.errors import install_handlers
from dialer.web.guards import Authenticate, BodyLimit
from dialer.web.idempotency import IdempotencyMiddleware, document_idempotency
from dialer.web.quotas import RequestQuotas
from dialer.web.routers import (
    account,
    calls,
    campaigns,
    dnc,
    health,
    numbers,
    pages,
    providers,
    schedules,
    webhooks,
)


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The ASGI app. `runtime` defaults to this process's (`get_runtime()`); it is kept on
    `app.state.runtime`, the webhooks' validator and connection pool on
    `app.state.webhooks`, the API keys' and accounts' request quotas on
    `app.state.quotas`."""
    app = FastAPI(
        title="Campaign dialer",
        version="0.1.0",
        description="Outbound-call campaigns from CSV files, dialled through Twilio.",
    )
    app.state.runtime = runtime or get_runtime()
    app.state.webhooks = providers.Webhooks(app.state.runtime)
    install_handlers(app)
    app.add_middleware(RequestContext)
    # The provider webhooks first: the busiest routes, matched before every other router's.
    for router in (providers.router, campaigns.router, dnc.router, health.router):
        app.include_router(router)
    if app.state.runtime.settings.metrics_token is not None:  # else no /metrics: 404
        app.include_router(health.metrics_router)
    app.include_router(schedules.router)
    app.include_router(webhooks.router)
    for router in (account.router, numbers.router, calls.router):
        app.include_router(router)
    runtime_of_app: Runtime = app.state.runtime
    app.add_middleware(
        IdempotencyMiddleware, database_url=lambda: runtime_of_app.settings.database_url
    )
    app.state.quotas = RequestQuotas(
        runtime_of_app.redis,
        rate_per_s=runtime_of_app.settings.rate_limit_per_s,
        burst=runtime_of_app.settings.rate_limit_burst,
        max_waiters=runtime_of_app.settings.max_waiters_per_account,
    )
    # Outermost last: the body's bound, then the key, before anything reads the body.
    app.add_middleware(
        Authenticate, settings=lambda: runtime_of_app.settings, quotas=app.state.quotas
    )
    app.add_middleware(
        BodyLimit, settings=lambda: runtime_of_app.settings, page_error=pages.error_reply
    )
    document_idempotency(app)
    pages.install(app)
    return app
