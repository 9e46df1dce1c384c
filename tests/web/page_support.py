"""Signing in to the campaign page from a test, shared by the HTTP and browser tests."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.orm import Session

from models import Account
from tests.factories import make_api_key

SESSION_SECRET = "test-session-secret-" + "s" * 32


def give_key(session: Session, account: Account, key: str) -> None:
    """Make `key` an API key of `account`."""
    make_api_key(session, account, key)


def form_token(html: str) -> str:
    """The `csrf_token` hidden field of the first form in `html`."""
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert found, html
    return found.group(1)


def sign_in(http: httpx.Client, key: str, next_path: str = "/") -> httpx.Response:
    """Fill in and send the sign-in form (its cookie and token) as a browser would."""
    form = http.get("/login", params={"next": next_path})
    assert form.status_code == 200, form.text
    return http.post(
        "/login", data={"api_key": key, "csrf_token": form_token(form.text), "next": next_path}
    )
