"""`dialer webhooks list|retry` and `dialer accounts webhook-secret`, run as a user runs
them (a subprocess on the test database)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from models import Account, WebhookEvent, WebhookStatus, transaction
from tests.cli.test_cli import Cli
from tests.factories import make_account
from tests.web.test_webhooks_api import add_event


@pytest.fixture
def cli(committed_db: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Cli]:
    env = {**os.environ, "DATABASE_URL": committed_db, "COLUMNS": "200"}
    work = tmp_path / "cwd"
    work.mkdir()
    yield Cli(env=env, cwd=work)


@pytest.fixture
def accounts(committed_db: str) -> tuple[int, int]:
    with transaction(committed_db) as session:
        return make_account(session, "acme").id, make_account(session, "other").id


def test_webhook_secret_is_created_once_and_rotated(
    cli: Cli, committed_db: str, accounts: tuple[int, int]
) -> None:
    first = cli.json("accounts", "webhook-secret", "acme", "--json")["secret"]
    assert first.startswith("whsec_")
    assert cli.ok("accounts", "webhook-secret", "acme").strip() == first
    rotated = cli.json("accounts", "webhook-secret", "acme", "--rotate", "--json")["secret"]
    assert rotated.startswith("whsec_") and rotated != first
    with transaction(committed_db) as session:
        account = session.scalars(select(Account).where(Account.name == "acme")).one()
        assert account.webhook_secret == rotated
        assert account.webhook_secret_previous == first
        assert account.webhook_secret_rotated_at is not None
    cli.fails("accounts", "webhook-secret", "nobody", code="account_not_found")


def test_webhooks_list_and_retry(cli: Cli, committed_db: str, accounts: tuple[int, int]) -> None:
    acme, other = accounts
    delivered = add_event(committed_db, acme, WebhookStatus.DELIVERED)
    dead = add_event(committed_db, acme, WebhookStatus.DEAD)
    theirs = add_event(committed_db, other, WebhookStatus.DEAD)

    listed = cli.json("webhooks", "list", "--account", "acme", "--json")
    assert [d["id"] for d in listed] == [dead, delivered]
    assert listed[0]["status"] == "dead" and listed[0]["last_status_code"] == 500
    only = cli.json("webhooks", "list", "--account", "acme", "--status", "dead", "--json")
    assert [d["id"] for d in only] == [dead]
    table = cli.ok("webhooks", "list", "--account", "acme")
    assert dead in table and "call.completed" in table

    retried = cli.json("webhooks", "retry", dead, "--account", "acme", "--json")
    assert (retried["id"], retried["status"]) == (dead, "pending")
    cli.fails("webhooks", "retry", theirs, "--account", "acme", code="webhook_delivery_not_found")
    with transaction(committed_db) as session:
        status = session.scalar(select(WebhookEvent.status).where(WebhookEvent.event_id == theirs))
    assert status is WebhookStatus.DEAD
    cli.fails("webhooks", "list", "--account", "acme", "--limit", "0", code="invalid_option")


def test_webhooks_list_never_cuts_the_ids_retry_needs(
    cli: Cli, committed_db: str, accounts: tuple[int, int]
) -> None:
    acme, _ = accounts
    dead = add_event(committed_db, acme, WebhookStatus.DEAD)
    cli.env["COLUMNS"] = "80"  # a newcomer's terminal
    table = cli.ok("webhooks", "list", "--account", "acme")
    assert dead in table
    assert cli.json("webhooks", "retry", dead, "--account", "acme", "--json")["id"] == dead
