"""A client of the served API for the web tests, its two accounts' keys, and the check of
the one error shape."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from dialer.runtime import Runtime
from models import Campaign, DncEntry, transaction

SAMPLE = Path(__file__).resolve().parents[2] / "campaigns" / "samples" / "appointments.csv"
MESSAGE = "Hello {first_name}, your appointment is on {appointment_time}."
KEY = "dk_test-key-acme-" + "a" * 32
OTHER_KEY = "dk_test-key-other-" + "b" * 32


@dataclass(frozen=True)
class Api:
    """A client of the served app, authenticated as the "acme" account."""

    http: httpx.Client
    runtime: Runtime
    account_id: int
    other_account_id: int

    def headers(self, key: str = KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def get(self, path: str, *, key: str = KEY, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers(key), **kwargs)

    def post(
        self, path: str, *, key: str = KEY, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        return self.http.post(path, headers={**self.headers(key), **(headers or {})}, **kwargs)

    def patch(self, path: str, *, key: str = KEY, **kwargs: Any) -> httpx.Response:
        return self.http.patch(path, headers=self.headers(key), **kwargs)

    def delete(self, path: str, *, key: str = KEY) -> httpx.Response:
        return self.http.delete(path, headers=self.headers(key))

    def upload(
        self, content: bytes, *, key: str = KEY, filename: str = "contacts.csv", **fields: Any
    ) -> httpx.Response:
        data = {"name": "March reminders", "message": MESSAGE, **fields}
        files = {"file": (filename, content, "text/csv")}
        return self.post("/v1/campaigns", key=key, data=data, files=files)

    def campaign_count(self) -> int:
        with transaction(self.runtime.settings.database_url) as session:
            return session.scalar(select(func.count()).select_from(Campaign)) or 0

    def dnc_numbers(self, account_id: int | None = None) -> set[str]:
        with transaction(self.runtime.settings.database_url) as session:
            query = select(DncEntry.e164).where(
                DncEntry.account_id == (account_id or self.account_id)
            )
            return set(session.scalars(query))


def error_code(response: httpx.Response, status: int) -> str:
    """The code of an error reply with `status`, after checking its shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "details"}
    assert body["error"]["message"]
    return str(body["error"]["code"])
