"""Errors with stable codes, shared by the API (status + JSON body) and the CLI
(`error: <code>: <message>` on stderr, non-zero exit)."""

from __future__ import annotations


class DialerError(Exception):
    """A refused request. `code` is stable (clients match on it); `message` is for people.

    `http_status` is what the HTTP API answers with it.
    """

    http_status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NotFoundError(DialerError):
    """An unknown id (campaign, attempt, account)."""

    http_status = 404


class ConflictError(DialerError):
    """The request does not fit the object's current state (e.g. resuming a finished campaign)."""

    http_status = 409
