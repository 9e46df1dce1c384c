"""The campaign page's sign-in: a signed session cookie and the CSRF token bound to it.

A person signs in at `/login` with an API key; the reply sets `dialer_session`, an
HttpOnly, SameSite=Strict cookie valid 12 hours, whose value is
`{"account_id", "key_id", "session_id", "csrf_token"}` signed with `SESSION_SECRET` and
stamped with its time (itsdangerous' `URLSafeTimedSerializer`: HMAC-SHA1 over the payload,
as Flask's sessions). The cookie never holds the key. The page's own POSTs carry the
session's CSRF token (a form field `csrf_token`) and are refused without it; the `/v1` API
never reads the cookie.

A signed cookie alone would stay good for its 12 hours whatever happens, so each session is
also open in Redis (`open_session`: the session id, expiring with the cookie) and every
page request checks it there (`is_open`) and checks that the API key it signed in with is
not revoked (the page's handlers read the key's row). Logout closes it (`close_session`);
revoking the key ends every session made with it at their next request.

The login form itself is protected by a double-submit token: `GET /login` sets a short-lived
`dialer_login_csrf` cookie and puts the same value in the form, and `POST /login` wants both
equal, so another site cannot sign a browser into an account of its choosing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis
from itsdangerous import BadSignature, URLSafeTimedSerializer

from dialer.errors import DialerError, ForbiddenError
from dialer.settings import Settings

SESSION_COOKIE = "dialer_session"
LOGIN_CSRF_COOKIE = "dialer_login_csrf"
SESSION_MAX_AGE_S = 12 * 3600
"""A session lasts 12 hours from sign-in; then the page asks for the key again."""
LOGIN_CSRF_MAX_AGE_S = 3600
"""How long a login form stays usable, in seconds."""
_SALT = "dialer.page-session"


class SessionSecretMissingError(DialerError):
    """`session_secret_missing`: SESSION_SECRET is not set, so no session can be signed."""

    http_status = 503

    def __init__(self) -> None:
        super().__init__(
            "session_secret_missing", "sign-in is off: set SESSION_SECRET in the API's settings"
        )


def new_token() -> str:
    """A random token (32 bytes, URL-safe): CSRF tokens and session ids."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class PageSession:
    """Who is signed in (the account, and the API key they signed in with), the session's
    id (its record in Redis) and the CSRF token their page's POSTs must carry."""

    account_id: int
    key_id: int
    session_id: str
    csrf_token: str

    @classmethod
    def new(cls, account_id: int, key_id: int) -> PageSession:
        """A fresh session for `account_id` signed in with key `key_id`, with a new random
        id and CSRF token."""
        return cls(account_id, key_id, new_token(), new_token())

    def check_csrf(self, token: str | None) -> None:
        """Raises `ForbiddenError` (`invalid_csrf_token`) unless `token` is this session's."""
        if not token or not secrets.compare_digest(token, self.csrf_token):
            raise ForbiddenError("invalid_csrf_token", "the form's CSRF token is missing or stale")


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    if settings.session_secret is None:
        raise SessionSecretMissingError()
    return URLSafeTimedSerializer(settings.session_secret.get_secret_value(), salt=_SALT)


def sign(settings: Settings, session: PageSession) -> str:
    """The cookie value of `session`. Raises `SessionSecretMissingError`."""
    return str(
        _serializer(settings).dumps(
            {
                "account_id": session.account_id,
                "key_id": session.key_id,
                "session_id": session.session_id,
                "csrf_token": session.csrf_token,
            }
        )
    )


def read(settings: Settings, cookie: str | None) -> PageSession | None:
    """The session a cookie value holds; None when there is none, or it is forged,
    malformed or older than `SESSION_MAX_AGE_S`. Raises `SessionSecretMissingError`."""
    serializer = _serializer(settings)
    if not cookie:
        return None
    try:
        payload = serializer.loads(cookie, max_age=SESSION_MAX_AGE_S)
        return PageSession(
            int(payload["account_id"]),
            int(payload["key_id"]),
            str(payload["session_id"]),
            str(payload["csrf_token"]),
        )
    except (BadSignature, KeyError, TypeError, ValueError):
        # BadSignature covers an expired stamp (SignatureExpired) and a malformed value (a
        # cookie of before sessions had ids among them: its holder signs in again).
        return None


def _record(session: PageSession) -> str:
    return f"dialer:page-session:{session.session_id}"


def open_session(client: redis.Redis, session: PageSession) -> None:
    """Record `session` as open in Redis for `SESSION_MAX_AGE_S`, under its key id."""
    client.set(_record(session), str(session.key_id), ex=SESSION_MAX_AGE_S)


def is_open(client: redis.Redis, session: PageSession) -> bool:
    """Whether `session` is still open (signed in, not logged out, not expired)."""
    value = client.get(_record(session))
    return value is not None and int(value) == session.key_id


def close_session(client: redis.Redis, session: PageSession) -> None:
    """End `session` (logout): its cookie, even if kept, signs nobody in again."""
    client.delete(_record(session))


def safe_next(path: str | None) -> str:
    """Where to go after sign-in: `path` when it is a path on this site, else `/` (no open
    redirect through `//host` or `/\\host`)."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\")):
        return path
    return "/"
