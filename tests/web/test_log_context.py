"""Every line a request writes names the request (its id, echoed in `X-Request-ID`) and,
once authenticated, the caller's account; nothing carries over to the next request on the
same connection."""

from __future__ import annotations

import httpx
import structlog

from dialer.runtime import Runtime
from dialer.web.app import create_app
from dialer.web.deps import CurrentAccount
from models import transaction
from tests.factories import make_account, make_api_key
from tests.servers import serve_app
from tests.support import captured_logs

KEY = "dk_test-key-context-" + "c" * 32
log = structlog.get_logger(__name__)


def test_request_id_and_account_are_on_every_line_of_the_request(runtime: Runtime) -> None:
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session, "context")
        make_api_key(session, account, KEY)
        account_id = account.id
    app = create_app(runtime)

    @app.get("/v1/_probe")
    def probe(account: CurrentAccount) -> dict[str, int]:
        log.info("probe_handled")
        return {"id": account.id}

    @app.get("/_anonymous")
    def anonymous() -> dict[str, str]:
        log.info("anonymous_handled")
        return {}

    auth = {"Authorization": f"Bearer {KEY}"}
    with serve_app(app) as url, httpx.Client(base_url=url) as http, captured_logs() as logs:
        given = http.get("/v1/_probe", headers={**auth, "X-Request-ID": "req-42"})
        made = http.get("/v1/_probe", headers=auth)
        # Same keep-alive connection: the account bound above must not leak into this one.
        bare = http.get("/_anonymous", headers={"X-Request-ID": "bad id with spaces"})
    assert given.headers["x-request-id"] == "req-42"
    generated = made.headers["x-request-id"]
    assert generated != "req-42" and len(generated) == 32
    fresh = bare.headers["x-request-id"]
    assert fresh != "bad id with spaces" and len(fresh) == 32

    probes = [e for e in logs if e["event"] == "probe_handled"]
    assert [(e["request_id"], e["account_id"]) for e in probes] == [
        ("req-42", account_id),
        (generated, account_id),
    ]
    (anon,) = [e for e in logs if e["event"] == "anonymous_handled"]
    assert anon["request_id"] == fresh
    assert "account_id" not in anon
