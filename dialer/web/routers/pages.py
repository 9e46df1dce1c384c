"""The campaign page for people: sign-in, the account's campaigns, one campaign's live figures
with charts, and the buttons of the actions its state allows (start / pause / resume /
cancel, `dialer.campaign_state.allowed_actions`), or, once it is finished, its results.

Routes (HTML unless said; none is in the OpenAPI document):

- `GET /login`, `POST /login` (form `api_key`): sign in (`dialer.web.sessions`); a wrong or
  revoked key is 401 with the error on the form and no cookie. `POST /logout`.
- `GET /`: the account's campaigns. `GET /campaigns/{id}`: the campaign's page, which polls
  `GET /campaigns/{id}/data` (JSON: the report, exactly as `GET /v1/campaigns/{id}/report`
  answers it) every 2 s while the campaign is not finished.
- `POST /campaigns/{id}/start|pause|resume|cancel` (form `csrf_token`): what the `/v1` POSTs
  of the same names do, then back to the page (303).
- `GET /campaigns/{id}/results.csv`: what `GET /v1/campaigns/{id}/results.csv` answers.

Without a valid session cookie (or after logout, or once the key it signed in with is revoked)
a page redirects to `/login` (303) and the data endpoint is 401
in the API's error shape. Any other refusal is an HTML page with the error's status and
message: a campaign of another account is 404, a POST without the session's CSRF token 403.
Pages are sent with a Content-Security-Policy that allows only this site's own scripts,
styles and images, and forbids framing (no clickjacking of the buttons).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import URL

from campaigns import lifecycle
from campaigns.accounts import authenticate
from dialer.campaign_state import CampaignAction, allowed_actions
from dialer.errors import DialerError, UnauthenticatedError
from dialer.web import sessions
from dialer.web.deps import RowId, RuntimeDep, SessionDep
from dialer.web.errors import error_response
from dialer.web.routers import campaigns as api
from dialer.web.schemas import CampaignOut
from models import Account, ApiKey

_HERE = Path(__file__).resolve().parents[1]
templates = Jinja2Templates(directory=_HERE / "templates")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Sent with every page and page reply."""


class SignInRequiredError(UnauthenticatedError):
    """No valid session cookie: a page redirects to `/login`, the data endpoint is 401."""

    def __init__(self) -> None:
        super().__init__("sign_in_required", "sign in at /login with an API key")


class _PageRoute(APIRoute):
    """A page route: a `DialerError` (raised by a handler or a dependency) is answered with
    an HTML page, or with a redirect to `/login` when nobody is signed in; a JSON route
    (`response_class=JSONResponse`) keeps the API's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        as_json = self.response_class is JSONResponse

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequiredError as error:
                if as_json:
                    response = error_response(error)
                else:
                    target = URL("/login").include_query_params(next=request.url.path)
                    response = RedirectResponse(str(target), status_code=303)
            except DialerError as error:
                response = error_response(error) if as_json else error_page(request, error)
            response.headers.update(SECURITY_HEADERS)
            return response

        return handle


router = APIRouter(include_in_schema=False, route_class=_PageRoute)


def install(app: FastAPI) -> None:
    """Add the page's routes and its static files (`/static`: CSS, JS, Chart.js) to `app`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")


def error_page(request: Request, error: DialerError) -> Response:
    """An HTML page that says `error`, with its class's status."""
    return templates.TemplateResponse(
        request, "error.html", {"error": error, "account": None}, status_code=error.http_status
    )


# --- who is signed in -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """The signed-in account and its session (the CSRF token the page's forms carry)."""

    account: Account
    session: sessions.PageSession


def signed_in(request: Request, rt: RuntimeDep, db: SessionDep) -> SignedIn:
    """The account of the request's session cookie.

    Raises:
        SignInRequiredError: no cookie, a forged or expired one, a session logged out, or
            one whose API key was revoked since.
        SessionSecretMissingError: SESSION_SECRET is not set.
    """
    page_session = sessions.read(rt.settings, request.cookies.get(sessions.SESSION_COOKIE))
    if page_session is None or not sessions.is_open(rt.redis, page_session):
        raise SignInRequiredError()
    key = db.get(ApiKey, page_session.key_id)
    if key is None or key.revoked_at is not None or key.account_id != page_session.account_id:
        raise SignInRequiredError()  # the key it signed in with was revoked (or deleted)
    return SignedIn(db.get_one(Account, page_session.account_id), page_session)


SignedInDep = Annotated[SignedIn, Depends(signed_in, scope="function")]


def csrf_checked(user: SignedInDep, csrf_token: Annotated[str, Form()] = "") -> SignedIn:
    """`signed_in`, for a POST: raises `ForbiddenError` (`invalid_csrf_token`) unless the
    form carries the session's CSRF token."""
    user.session.check_csrf(csrf_token)
    return user


CsrfCheckedDep = Annotated[SignedIn, Depends(csrf_checked, scope="function")]


# --- sign-in ---------------------------------------------------------------------------------


def _login_form(
    request: Request, token: str, next_path: str, error: str | None, status: int
) -> Response:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"account": None, "csrf_token": token, "next": next_path, "error": error},
        status_code=status,
    )


def _secure(request: Request, rt: RuntimeDep) -> bool:
    """Cookies get `Secure` when the page is reached over HTTPS (here or at the public URL)."""
    return request.url.scheme == "https" or rt.settings.public_base_url.startswith("https://")


@router.get("/login")
def login_form(request: Request, rt: RuntimeDep, next: str = "/") -> Response:
    """The sign-in form, with a fresh login CSRF token in the form and in a cookie."""
    if rt.settings.session_secret is None:
        raise sessions.SessionSecretMissingError()
    token = sessions.new_token()
    response = _login_form(request, token, sessions.safe_next(next), None, 200)
    response.set_cookie(
        sessions.LOGIN_CSRF_COOKIE,
        token,
        max_age=sessions.LOGIN_CSRF_MAX_AGE_S,
        path="/login",
        secure=_secure(request, rt),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/login")
def login(
    request: Request,
    rt: RuntimeDep,
    db: SessionDep,
    api_key: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Sign in with an API key: 303 to `next` with the session cookie set. A wrong or revoked
    key is the form again, 401, with the error and no cookie; a stale form is 403."""
    next_path = sessions.safe_next(next)
    form_token = request.cookies.get(sessions.LOGIN_CSRF_COOKIE, "")
    if not form_token or not csrf_token or form_token != csrf_token:
        new_form = "The sign-in form expired; reload the page and try again."
        return _login_form(request, form_token, next_path, new_form, 403)
    try:
        account, key = authenticate(db, api_key.strip())
    except UnauthenticatedError:
        unknown = "This API key is unknown or has been revoked."
        return _login_form(request, form_token, next_path, unknown, 401)
    page_session = sessions.PageSession.new(account.id, key.id)
    cookie = sessions.sign(rt.settings, page_session)
    sessions.open_session(rt.redis, page_session)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        cookie,
        max_age=sessions.SESSION_MAX_AGE_S,
        path="/",
        secure=_secure(request, rt),
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(user: CsrfCheckedDep, rt: RuntimeDep) -> Response:
    """Sign out: the session is closed (its cookie, even if kept, signs nobody in again) and
    the cookie cleared, then the sign-in form (303)."""
    sessions.close_session(rt.redis, user.session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    return response


# --- pages -----------------------------------------------------------------------------------


@router.get("/")
def index(request: Request, user: SignedInDep, db: SessionDep) -> Response:
    """The account's campaigns, newest first."""
    found = lifecycle.list_campaigns(db, user.account.id)
    rows = [CampaignOut.model_validate(campaign) for campaign in reversed(found.items)]
    return templates.TemplateResponse(
        request,
        "index.html",
        {"account": user.account, "csrf_token": user.session.csrf_token, "campaigns": rows},
    )


@dataclass(frozen=True)
class PageAction:
    """A campaign page button: the action it posts, its label, its style (`primary` for
    the sensible next step) and the question it asks first, if any."""

    name: str
    label: str
    style: str
    confirm: str | None = None


PAGE_ACTIONS = {
    CampaignAction.START: PageAction("start", "Start", "primary"),
    CampaignAction.PAUSE: PageAction("pause", "Pause", "secondary"),
    CampaignAction.RESUME: PageAction("resume", "Resume", "primary"),
    CampaignAction.CANCEL: PageAction(
        "cancel",
        "Cancel",
        "danger",
        "Cancel this campaign? Contacts not yet called will not be called.",
    ),
}
"""The button of each of `dialer.campaign_state.OPERATOR_ACTIONS`."""


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, campaign_id: RowId, user: SignedInDep, db: SessionDep
) -> Response:
    """One campaign's page; its figures come from `/campaigns/{id}/data`. Its buttons are
    the actions the campaign's state allows; a finished campaign (none allowed) offers its
    results instead. 404 page for a campaign of another account."""
    campaign = api.get_campaign(campaign_id, user.account, db)
    actions = [PAGE_ACTIONS[action] for action in allowed_actions(campaign.status)]
    return templates.TemplateResponse(
        request,
        "campaign.html",
        {
            "account": user.account,
            "csrf_token": user.session.csrf_token,
            "campaign": campaign,
            "actions": actions,
        },
    )


@router.get("/campaigns/{campaign_id}/results.csv", response_class=StreamingResponse)
def campaign_results(campaign_id: RowId, user: SignedInDep, db: SessionDep) -> StreamingResponse:
    """The campaign's results, as `GET /v1/campaigns/{id}/results.csv` answers them."""
    return api.results_csv(campaign_id, user.account, db)


@router.get("/campaigns/{campaign_id}/data", response_class=JSONResponse)
def campaign_data(
    campaign_id: RowId, user: SignedInDep, db: SessionDep, rt: RuntimeDep
) -> JSONResponse:
    """The campaign's report as JSON: what `GET /v1/campaigns/{id}/report` answers (its
    handler makes it), for the page's script, which has the cookie and no bearer key."""
    return JSONResponse(api.report(campaign_id, user.account, db, rt).model_dump(mode="json"))


@router.post("/campaigns/{campaign_id}/{action}")
def campaign_action(
    campaign_id: RowId,
    action: Literal["start", "pause", "resume", "cancel"],
    user: CsrfCheckedDep,
    db: SessionDep,
) -> Response:
    """Start, pause, resume or cancel, as the `/v1` POSTs of those names do; then the page
    (303). An action the campaign's state does not allow is a 409 page."""
    do = {
        "start": api.start_campaign,
        "pause": api.pause_campaign,
        "resume": api.resume_campaign,
        "cancel": api.cancel_campaign,
    }[action]
    do(campaign_id, user.account, f"page:{user.account.name}", db)
    return RedirectResponse(f"/campaigns/{campaign_id}", status_code=303)
