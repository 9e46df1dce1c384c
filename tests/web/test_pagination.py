"""Every list of the API is paged the same way: `?limit=` (1-1000) and an opaque
`?cursor=`, the reply `{"items", "next_cursor"}` (null on the last page), a cursor that is
not one of the list's own 400 `invalid_cursor`; and the OpenAPI document says so."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.support import SAMPLE, Api, error_code
from tests.web.test_api import campaign_id
from tests.web.test_schedules_api import create as create_schedule

__all__ = ["campaign_id"]  # fixtures


def every_page(api: Api, path: str, key: str = "id") -> list[Any]:
    """The list at `path` read two at a time, following `next_cursor` to the end."""
    seen: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = api.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= 2
        seen += [item[key] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def whole(api: Api, path: str, key: str = "id") -> list[Any]:
    page = api.get(path, params={"limit": 1000}).json()
    assert page["next_cursor"] is None
    return [item[key] for item in page["items"]]


@pytest.fixture
def lists(api: Api, campaign_id: int) -> dict[str, str]:
    """Lists of a few items each: path -> the items' key."""
    for action in ("start", "pause", "resume", "pause"):
        assert api.post(f"/v1/campaigns/{campaign_id}/{action}").status_code == 200
    for _ in range(2):
        assert api.upload(SAMPLE.read_bytes()).status_code == 201
    schedule_id = create_schedule(api)
    create_schedule(api)
    create_schedule(api)
    for _ in range(3):
        assert api.post(f"/v1/schedules/{schedule_id}/run").status_code == 201
    for number in ("+14155550101", "+14155550102"):
        assert api.post("/v1/numbers", json={"number": number}).status_code == 201
    for _ in range(3):
        call = {"to_number": "+447386172392", "message": "Hi"}
        assert api.post("/v1/calls", json=call).status_code == 201
    return {
        "/v1/campaigns": "id",
        f"/v1/campaigns/{campaign_id}/events": "id",
        "/v1/schedules": "id",
        f"/v1/schedules/{schedule_id}/runs": "id",
        f"/v1/schedules/{schedule_id}/events": "id",
        "/v1/numbers": "number",
        "/v1/calls": "call_id",
        f"/v1/campaigns/{campaign_id}/calls": "call_id",
    }


def test_every_list_pages_through_all_its_items_in_order(api: Api, lists: dict[str, str]) -> None:
    for path, key in lists.items():
        items = whole(api, path, key)
        assert len(items) >= 3, path
        assert every_page(api, path, key) == items, path


def test_a_cursor_not_of_the_list_is_refused(api: Api, lists: dict[str, str]) -> None:
    cursors = {}
    for path in lists:
        cursors[path] = api.get(path, params={"limit": 1}).json()["next_cursor"]
        assert cursors[path], path
    paths = list(lists)
    for index, path in enumerate(paths):
        before = paths[index - 1]
        # A campaign's calls are the calls filtered: one list, whose cursors both take.
        one_list = path.endswith("/calls") and before.endswith("/calls")
        # Base64 of "{}", and of a campaigns cursor whose key is not an id.
        refused = ["nonsense", "e30", "eyJsIjoiY2FtcGFpZ25zIiwiayI6WyJ4Il19"]
        for cursor in refused + ([] if one_list else [cursors[before]]):
            response = api.get(path, params={"cursor": cursor})
            assert error_code(response, 400) == "invalid_cursor", (path, cursor)
        assert error_code(api.get(path, params={"limit": 1001}), 400) == "invalid_request"
        assert error_code(api.get(path, params={"limit": 0}), 400) == "invalid_request"


def test_the_document_pages_every_list(api: Api) -> None:
    document = api.http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    lists = 0
    for path, operations in document["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        content = get["responses"].get("200", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        assert schema.get("type") != "array", f"{path} answers a bare list"
        ref = schema.get("$ref", "").rsplit("/", 1)[-1]
        if ref and "items" in schemas[ref].get("properties", {}):
            lists += 1
            assert set(schemas[ref]["properties"]) == {"items", "next_cursor"}, path
            names = {p["name"] for p in get.get("parameters", [])}
            assert {"limit", "cursor"} <= names, path
    assert lists >= 9
