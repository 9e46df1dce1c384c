"""The account, its caller IDs and its keys through the HTTP API: GET/PATCH /v1/account,
GET/POST/DELETE /v1/numbers, revoked keys, and one account never seeing another's."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from campaigns.accounts import create_api_key, revoke_api_key
from dialer.runtime import Runtime
from dialer.web.app import create_app
from models import Account, ApiKey, transaction
from tests.servers import serve_app
from tests.web.support import OTHER_KEY, SAMPLE, Api, error_code


def test_get_and_patch_the_account(api: Api) -> None:
    shown = api.get("/v1/account")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["name"] == "acme"
    assert (body["max_concurrency"], body["cps"], body["frequency_caps"]) == (
        10,
        1.0,
        [{"calls": 3, "days": 1}],
    )
    assert body["webhook_url"] is None
    assert [n["number"] for n in body["numbers"]] == ["+15005550006"]

    patched = api.patch(
        "/v1/account",
        json={"max_concurrency": 30, "cps": 4.5, "webhook_url": "http://127.0.0.1:9000/hook"},
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["max_concurrency"], patched.json()["cps"]) == (30, 4.5)
    assert patched.json()["frequency_caps"] == [{"calls": 3, "days": 1}]  # not given: unchanged
    caps = [{"calls": 3, "days": 30}, {"calls": 1, "days": 1}]
    patched = api.patch("/v1/account", json={"frequency_caps": caps})
    assert patched.status_code == 200, patched.text
    assert patched.json()["frequency_caps"] == sorted(caps, key=lambda c: c["days"])
    assert api.get("/v1/account").json()["webhook_url"] == "http://127.0.0.1:9000/hook"
    cleared = api.patch("/v1/account", json={"webhook_url": None})
    assert cleared.json()["webhook_url"] is None
    # The other account is untouched.
    assert api.get("/v1/account", key=OTHER_KEY).json()["max_concurrency"] == 10


def test_patch_refuses_bad_values(api: Api) -> None:
    assert error_code(api.patch("/v1/account", json={"cps": 0}), 400) == "invalid_body"
    assert error_code(api.patch("/v1/account", json={"colour": "red"}), 400) == "invalid_body"
    for caps in (
        [{"calls": 0, "days": 1}],
        [{"calls": 1, "days": 367}],
        [{"calls": 1, "days": 1, "hours": 2}],
        [{"calls": 1, "days": d} for d in range(1, 7)],
    ):
        refused = api.patch("/v1/account", json={"frequency_caps": caps})
        assert error_code(refused, 400) == "invalid_body", caps
    same_period = [{"calls": 1, "days": 7}, {"calls": 2, "days": 7}]
    refused = api.patch("/v1/account", json={"frequency_caps": same_period})
    assert error_code(refused, 400) == "invalid_option"
    assert api.get("/v1/account").json()["frequency_caps"] == [{"calls": 3, "days": 1}]
    refused = api.patch("/v1/account", json={"webhook_url": "ftp://example.com/x"})
    assert error_code(refused, 400) == "webhook_url_not_allowed"
    assert api.get("/v1/account").json()["cps"] == 1.0


def test_numbers_add_update_list_remove(api: Api) -> None:
    added = api.post("/v1/numbers", json={"number": "+14155550101", "max_concurrency": 3})
    assert added.status_code == 201, added.text
    assert added.json() | {"created_at": None} == {
        "number": "+14155550101",
        "outbound": True,
        "max_concurrency": 3,
        "max_calls_per_minute": 10,  # the vendor guidance, for a new number
        "max_calls_per_day": 100,
        "rested_at": None,
        "rested_reason": None,
        "created_at": None,
    }
    limits = {"number": "+14155550101", "max_calls_per_minute": 4, "max_calls_per_day": None}
    changed = api.post("/v1/numbers", json=limits).json()
    assert (changed["max_calls_per_minute"], changed["max_calls_per_day"]) == (4, None)
    assert changed["max_concurrency"] == 3  # left out: unchanged
    rested = api.post("/v1/numbers", json={"number": "+14155550101", "rested": True}).json()
    assert rested["rested_at"] is not None
    assert rested["rested_reason"] == "rested by api-key:test"
    back = api.post("/v1/numbers", json={"number": "+14155550101", "rested": False}).json()
    assert (back["rested_at"], back["rested_reason"]) == (None, None)
    zero = api.post("/v1/numbers", json={"number": "+14155550101", "max_calls_per_day": 0})
    assert error_code(zero, 400) == "invalid_body"  # the body's schema refuses it
    verified = api.post("/v1/numbers", json={"number": "+14155550103"})  # a verified caller ID
    assert verified.status_code == 201, verified.text
    updated = api.post("/v1/numbers", json={"number": "+14155550101", "outbound": False})
    assert updated.status_code == 200, updated.text
    assert updated.json()["outbound"] is False
    listed = api.get("/v1/numbers").json()["items"]
    assert [(n["number"], n["outbound"]) for n in listed] == [
        ("+15005550006", True),
        ("+14155550101", False),
        ("+14155550103", True),
    ]
    removed = api.delete("/v1/numbers/+14155550103")
    assert removed.status_code == 204, removed.text
    assert [n["number"] for n in api.get("/v1/numbers").json()["items"]] == [
        "+15005550006",
        "+14155550101",
    ]


def test_numbers_refused(api: Api) -> None:
    not_ours = api.post("/v1/numbers", json={"number": "+14155550199"})
    assert error_code(not_ours, 400) == "caller_id_not_verified"
    bad = api.post("/v1/numbers", json={"number": "07386172392"})
    assert error_code(bad, 400) == "invalid_phone_format"
    assert error_code(api.post("/v1/numbers", json={}), 400) == "invalid_body"
    assert error_code(api.delete("/v1/numbers/+14155550101"), 404) == "number_not_found"
    # A number a campaign presents cannot go: disable it for outbound instead.
    assert api.upload(SAMPLE.read_bytes()).status_code == 201
    assert error_code(api.delete("/v1/numbers/+15005550006"), 409) == "number_in_use"
    assert [n["number"] for n in api.get("/v1/numbers").json()["items"]] == ["+15005550006"]


def test_another_accounts_number_is_not_found(api: Api) -> None:
    assert api.post("/v1/numbers", json={"number": "+14155550102"}).status_code == 201
    assert error_code(api.delete("/v1/numbers/+14155550102", key=OTHER_KEY), 404) == (
        "number_not_found"
    )
    assert [n["number"] for n in api.get("/v1/numbers", key=OTHER_KEY).json()["items"]] == [
        "+15005550006"
    ]
    assert "+14155550102" in [n["number"] for n in api.get("/v1/numbers").json()["items"]]


def test_a_revoked_key_is_refused_at_once_and_other_keys_still_work(api: Api) -> None:
    with transaction(api.runtime.settings.database_url) as session:
        account = session.scalars(select(Account).where(Account.name == "acme")).one()
        first = create_api_key(session, account, "crm")
        second = create_api_key(session, account, "billing")
    assert api.get("/v1/account", key=first.key).status_code == 200
    with transaction(api.runtime.settings.database_url) as session:
        revoke_api_key(session, first.id)
    assert error_code(api.get("/v1/account", key=first.key), 401) == "revoked_api_key"
    refused = api.post("/v1/numbers", key=first.key, json={"number": "+14155550101"})
    assert error_code(refused, 401) == "revoked_api_key"
    assert api.get("/v1/account", key=second.key).status_code == 200
    with transaction(api.runtime.settings.database_url) as session:
        used = session.get_one(ApiKey, second.id)
        assert used.last_used_at is not None
        assert session.get_one(ApiKey, first.id).revoked_at is not None


def test_every_new_route_answers_errors_in_the_one_shape(api: Api) -> None:
    for response, status, code in [
        (api.http.get("/v1/calls"), 401, "unauthenticated"),
        (api.get("/v1/account", key="dk_unknown"), 401, "unknown_api_key"),
        (api.delete("/v1/account"), 405, "method_not_allowed"),
        (api.http.put("/v1/calls", headers=api.headers()), 405, "method_not_allowed"),
        (api.get("/v1/calls/0"), 400, "invalid_request"),
        (api.get(f"/v1/campaigns/{2**63}"), 400, "invalid_request"),
        (api.get("/v1/nowhere/at/all"), 404, "not_found"),
        (
            api.http.patch(
                "/v1/account",
                content=b"{",
                headers={**api.headers(), "Content-Type": "application/json"},
            ),
            422,
            "invalid_json",
        ),
    ]:
        assert error_code(response, status) == code, response.request.url
        assert response.headers["content-type"] == "application/json"


def test_a_server_failure_is_500_in_the_one_shape_without_a_trace(runtime: Runtime) -> None:
    app = create_app(runtime)

    def broken() -> None:
        raise RuntimeError("secret internals: /etc/passwd")

    app.add_api_route("/broken", broken)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        response = http.get("/broken")
    assert error_code(response, 500) == "internal_error"
    assert "Traceback" not in response.text and "secret" not in response.text


def test_another_accounts_caller_id_is_refused_as_number_taken(api: Api) -> None:
    assert api.post("/v1/numbers", json={"number": "+14155550102"}).status_code == 201
    taken = api.post("/v1/numbers", key=OTHER_KEY, json={"number": "+14155550102"})
    assert error_code(taken, 409) == "number_taken"
    assert [n["number"] for n in api.get("/v1/numbers", key=OTHER_KEY).json()["items"]] == [
        "+15005550006"
    ]
    # Twilio's magic test number reaches no one: every account may have it.
    assert api.post("/v1/numbers", key=OTHER_KEY, json={"number": "+15005550006"}).status_code == (
        200
    )


def test_a_tenant_may_lower_its_caps_but_never_raise_them_past_the_ceiling(api: Api) -> None:
    refused = {
        field: api.patch("/v1/account", json={field: value})
        for field, value in [("max_concurrency", 100_000), ("cps", 10_000)]
    }
    assert {f: error_code(r, 400) for f, r in refused.items()} == dict.fromkeys(
        refused, "above_ceiling"
    )
    ceilings = api.runtime.settings
    for field, ceiling in [
        ("max_concurrency", ceilings.account_max_concurrency_ceiling),
        ("cps", ceilings.account_cps_ceiling),
    ]:
        assert [d["field"] for d in refused[field].json()["error"]["details"]] == [field]
        assert f"at most {ceiling:g}" in refused[field].json()["error"]["message"]
    shown = api.get("/v1/account").json()
    assert (shown["max_concurrency"], shown["cps"]) == (10, 1.0)
    assert (shown["max_concurrency_ceiling"], shown["cps_ceiling"]) == (
        ceilings.account_max_concurrency_ceiling,
        ceilings.account_cps_ceiling,
    )
    at_ceiling = {
        "max_concurrency": ceilings.account_max_concurrency_ceiling,
        "cps": ceilings.account_cps_ceiling,
    }
    assert api.patch("/v1/account", json=at_ceiling).status_code == 200
    lowered = api.patch("/v1/account", json={"max_concurrency": 4, "cps": 0.5})
    assert lowered.status_code == 200, lowered.text
    assert (lowered.json()["max_concurrency"], lowered.json()["cps"]) == (4, 0.5)


def test_a_campaign_is_never_capped_above_its_account(api: Api) -> None:
    refused = api.upload(SAMPLE.read_bytes(), max_concurrency="11")
    assert error_code(refused, 400) == "invalid_option"
    assert api.patch("/v1/account", json={"max_concurrency": 4}).status_code == 200
    created = api.upload(SAMPLE.read_bytes())  # the default cap (10) is lowered to the account's
    assert created.status_code == 201, created.text
    shown = api.get(f"/v1/campaigns/{created.json()['campaign_id']}").json()
    assert shown["max_concurrency"] == 4


def test_resaving_a_number_keeps_its_cap_and_only_null_clears_it(api: Api) -> None:
    added = api.post("/v1/numbers", json={"number": "+14155550101", "max_concurrency": 3})
    assert added.status_code == 201, added.text
    resaved = api.post("/v1/numbers", json={"number": "+14155550101", "outbound": False})
    assert (resaved.json()["max_concurrency"], resaved.json()["outbound"]) == (3, False)
    again = api.post("/v1/numbers", json={"number": "+14155550101"})
    assert (again.json()["max_concurrency"], again.json()["outbound"]) == (3, False)
    cleared = api.post("/v1/numbers", json={"number": "+14155550101", "max_concurrency": None})
    assert cleared.json()["max_concurrency"] is None


def test_turning_a_numbers_outbound_off_pauses_the_campaigns_that_present_it(api: Api) -> None:
    created = api.upload(SAMPLE.read_bytes())
    campaign_id = created.json()["campaign_id"]
    assert api.post(f"/v1/campaigns/{campaign_id}/start").status_code == 200
    assert (
        api.post("/v1/numbers", json={"number": "+15005550006", "outbound": False}).status_code
        == 200
    )
    campaign = api.get(f"/v1/campaigns/{campaign_id}").json()
    assert campaign["status"] == "paused"
    assert "+15005550006" in campaign["status_reason"]
    refused = api.post(f"/v1/campaigns/{campaign_id}/resume")
    assert error_code(refused, 409) == "caller_id_not_outbound"
    enabled = api.post("/v1/numbers", json={"number": "+15005550006", "outbound": True})
    assert enabled.status_code == 200
    assert api.post(f"/v1/campaigns/{campaign_id}/resume").status_code == 200
