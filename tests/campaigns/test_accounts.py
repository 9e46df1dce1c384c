"""Accounts, keys and caller IDs as services: the default caller ID's order, the provider's
say on a new number, keys that are refused once revoked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from campaigns.accounts import (
    authenticate,
    create_account,
    create_api_key,
    outbound_number,
    revoke_api_key,
    save_number,
)
from dialer.errors import DialerError, ProviderFailedError, UnauthenticatedError
from tests.providers.conftest import make_provider
from tests.simulator.support import Sim, run_sim


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with run_sim(owned_numbers=["+15005550006", "+14155550101", "+14155550102"]) as running:
        yield running


def test_the_default_caller_id_is_the_first_outbound_number_added(
    db_session: Session, sim: Sim
) -> None:
    provider = make_provider(sim.base_url)
    account = create_account(db_session, "acme", simulator=False)
    with pytest.raises(DialerError) as caught:
        outbound_number(db_session, account.id, None)
    assert caught.value.code == "no_outbound_number"
    for number, outbound in [("+14155550102", False), ("+14155550101", True)]:
        save_number(
            db_session,
            account.id,
            number,
            outbound=outbound,
            max_concurrency=None,
            provider=provider,
            actor="test",
        )
    assert outbound_number(db_session, account.id, None).e164 == "+14155550101"
    with pytest.raises(DialerError) as caught:
        outbound_number(db_session, account.id, "+14155550102")  # not enabled for outbound
    assert caught.value.code == "from_number_not_found"
    simulator_account = create_account(db_session, "sim", simulator=True)
    assert outbound_number(db_session, simulator_account.id, None).e164 == "+15005550006"


def test_a_number_the_provider_does_not_vouch_for_is_refused(db_session: Session, sim: Sim) -> None:
    account = create_account(db_session, "acme", simulator=False)
    with pytest.raises(DialerError) as caught:
        save_number(
            db_session,
            account.id,
            "+14155550199",
            outbound=True,
            max_concurrency=None,
            provider=make_provider(sim.base_url),
            actor="test",
        )
    assert caught.value.code == "caller_id_not_verified"
    with pytest.raises(ProviderFailedError) as failed:
        save_number(
            db_session,
            account.id,
            "+14155550101",
            outbound=True,
            max_concurrency=None,
            provider=make_provider(sim.base_url, token="wrong-token"),
            actor="test",
        )
    assert (failed.value.code, failed.value.http_status) == ("provider_error", 502)


def test_keys_authenticate_until_revoked(db_session: Session) -> None:
    account = create_account(db_session, "acme", simulator=True)
    issued = create_api_key(db_session, account, "crm")
    assert issued.key.startswith("dk_") and len(issued.key) == 46
    found, key = authenticate(db_session, issued.key)
    assert (found.id, key.name, key.prefix) == (account.id, "crm", issued.key[:10])
    assert key.last_used_at is not None
    revoke_api_key(db_session, issued.id)
    with pytest.raises(UnauthenticatedError) as caught:
        authenticate(db_session, issued.key)
    assert caught.value.code == "revoked_api_key"
    with pytest.raises(UnauthenticatedError) as caught:
        authenticate(db_session, "dk_" + "x" * 43)
    assert caught.value.code == "unknown_api_key"
    with pytest.raises(DialerError) as exists:
        create_account(db_session, "acme", simulator=True)
    assert exists.value.code == "account_exists"
