"""The OpenAPI document against the served app: schemathesis generates requests for every
operation (authenticated with a real key, `EXAMPLES` examples each) and checks that none
is answered with a 5xx and that every response is one the document describes (status,
content type, headers, body schema).

Run alone: `pytest tests/web/test_schemathesis.py` (about half a minute). The operations
share one database and server; `wait` is capped at 0 so no example holds its request
open. Hypothesis runs derandomized: the same examples every run.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.web.support import KEY, Api

EXAMPLES = 10
"""Generated requests per operation."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_the_app_keeps_to_its_openapi_document(api: Api) -> None:
    base_url = str(api.http.base_url).rstrip("/")
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def keeps_to_the_document(case: schemathesis.Case) -> None:
            if isinstance(case.body, dict) and "wait" in case.body:
                case.body["wait"] = 0
            case.call_and_validate(
                base_url=base_url,
                headers={"Authorization": f"Bearer {KEY}"},
                checks=CHECKS,
                timeout=30,
            )

        keeps_to_the_document()
