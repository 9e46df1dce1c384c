"""The campaign page for people: sign-in, the account's campaigns, one campaign's live figures
with charts, and the buttons of the actions its state allows (start / pause / resume /
cancel, `dialer.campaign_state.allowed_actions`), or, once it is finished, its results.

Routes (HTML unless said; none is in the OpenAPI document):

- `GET /login`, `POST /login` (form `api_key`): sign in (`dialer.web.sessions`); a wrong or
  revoked key is 401 with the error on the form and no cookie. `POST /logout`.
- `GET /`: the account's campaigns. `GET /campaigns/{id}`: the campaign's page, which polls
  `GET /campaigns/{id}/data` (JSON: the report, exactly as `GET /v1/campaigns/{id}/report`
  answers it) every 2 s while the campaign is not finished. A draft campaign's page shows
  its preview first (what ingest accepted and rejected by reason, the first due time and
  the estimated finish: `GET /v1/campaigns/{id}/preview`), with Start.
- `GET /campaigns/new`, `POST /campaigns` (multipart: `csrf_token`, `file`, and the fields
  of `POST /v1/campaigns`, blank ones left out): a draft campaign from a CSV, made as
  `POST /v1/campaigns` makes it and bounded alike (`Settings.upload_max_bytes`), then its
  page (303). A refusal is the form again with the error's code and message, and the
  error's status; nothing is created.
- `POST /campaigns/{id}/start|pause|resume|cancel` (form `csrf_token`; cancel also
  `hang_up`): what the `/v1` POSTs of the same names do, then back to the page (303).
- `GET /campaigns/{id}/results.csv|attempts.csv|results.xlsx|attempts.xlsx|rejected.csv`:
  what the `/v1` GETs of the same names answer.
- `GET /opt-outs`: the account's do-not-call list, newest first, a page at a time
  (`?cursor=`), every column of its entries (the source of an opt-out among them).

Without a valid session cookie (or after logout, or once the key it signed in with is revoked)
a page redirects to `/login` (303) and the data endpoint is 401
in the API's error shape. Any other refusal is an HTML page with the error's status, code
and message: a campaign of another account is 404, a POST without the session's CSRF token
403.
Pages are sent with a Content-Security-Policy that allows only this site's own scripts,
styles and images, and forbids framing (no clickjacking of the buttons).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import inspect
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL, FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Scope

from campaigns import dnc, lifecycle
from campaigns.accounts import authenticate
from campaigns.options import CampaignOptions
from campaigns.paging import DEFAULT_LIMIT
from dialer.campaign_state import CampaignAction, allowed_actions
from dialer.errors import BodyTooLargeError, DialerError, UnauthenticatedError
from dialer.web import sessions
from dialer.web.deps import PageCursor, RowId, RuntimeDep, SessionDep
from dialer.web.errors import error_response, request_error
from dialer.web.routers import campaigns as api
from dialer.web.schemas import CampaignForm, CampaignOut
from models import Account, ApiKey, CampaignStatus, DncEntry

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
    """A page route: a `DialerError` (raised by a handler or a dependency) or a field that
    does not validate is answered with an HTML page, or with a redirect to `/login` when
    nobody is signed in; a JSON route (`response_class=JSONResponse`) keeps the API's error
    shape."""

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
            except RequestValidationError as invalid:  # a path, query or form field
                refusal = request_error(invalid)
                response = error_response(refusal) if as_json else error_page(request, refusal)
            response.headers.update(SECURITY_HEADERS)
            return response

        return handle


router = APIRouter(include_in_schema=False, route_class=_PageRoute)


def install(app: FastAPI) -> None:
    """Add the page's routes and its static files (`/static`: CSS, JS, Chart.js) to `app`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")


def error_page(request: Request, error: DialerError) -> Response:
    """An HTML page that says `error` (its code and message), with its class's status."""
    return templates.TemplateResponse(
        request, "error.html", {"error": error, "account": None}, status_code=error.http_status
    )


def error_reply(scope: Scope, error: DialerError) -> Response:
    """`error_page` for a request refused before the app reads it (`dialer.web.guards`'s
    `BodyLimit`: an upload past the bound), with the page's headers."""
    response = error_page(Request(scope), error)
    response.headers.update(SECURITY_HEADERS)
    return response


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


# --- a new campaign from a CSV ----------------------------------------------------------------

MAX_FORM_FIELDS = 200
"""Most fields one new-campaign form may carry (its settings, repeated `holiday` and
`column_map` entries among them); the file is one more part."""

_LIST_FIELDS = frozenset(
    name
    for name, field in CampaignForm.model_fields.items()
    if list in (get_origin(field.annotation), *map(get_origin, get_args(field.annotation)))
)
"""The settings a form repeats (`holiday`, `column_map`): read as lists."""


def _new_campaign_form(
    request: Request,
    user: SignedIn,
    rt: RuntimeDep,
    values: dict[str, Any],
    error: DialerError | None,
) -> Response:
    limit = rt.settings.upload_max_bytes
    return templates.TemplateResponse(
        request,
        "new_campaign.html",
        {
            "account": user.account,
            "csrf_token": user.session.csrf_token,
            "values": values,
            "error": error,
            "upload_max_bytes": limit,
            "too_large": BodyTooLargeError(limit),
        },
        status_code=error.http_status if error else 200,
    )


@router.get("/campaigns/new")
def new_campaign(request: Request, user: SignedInDep, rt: RuntimeDep) -> Response:
    """The form that uploads a CSV into a new draft campaign."""
    return _new_campaign_form(request, user, rt, {}, None)


def _settings_of(form: FormData) -> dict[str, Any]:
    """The form's settings for `CampaignForm`: every field but the token and the file, a
    blank one left out (its default applies), a repeated one as a list."""
    settings: dict[str, Any] = {}
    for name in dict.fromkeys(form.keys()):
        if name in ("csrf_token", "file"):
            continue
        values = [v for v in form.getlist(name) if isinstance(v, str) and v.strip()]
        if values:
            settings[name] = values if name in _LIST_FIELDS else values[-1]
    return settings


@router.post("/campaigns")
async def create_campaign(request: Request, user: SignedInDep, rt: RuntimeDep) -> Response:
    """Create a draft campaign from the uploaded CSV, as `POST /v1/campaigns` does (the
    same settings schema and ingest), then its page with the preview (303). The session is
    checked before the body is read; the body is bounded by `Settings.upload_max_bytes`
    (`dialer.web.guards.BodyLimit`). A refusal (CSRF token, settings, the CSV as a whole)
    is the form again with the error, at the error's status; nothing is created."""
    values: dict[str, Any] = {}
    try:
        async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
            user.session.check_csrf(str(form.get("csrf_token") or ""))
            values = _settings_of(form)
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise DialerError("missing_field", "file: choose a CSV file to upload")
            options = CampaignOptions(**CampaignForm.model_validate(values).model_dump())
            imported = await run_in_threadpool(
                lifecycle.import_campaign,
                rt.settings.database_url,
                rt.settings.data_dir,
                user.account.id,
                options,
                upload.file,
            )
    except HTTPException as problem:  # a malformed multipart body, too many fields
        error = DialerError("invalid_body", str(problem.detail))
        return _new_campaign_form(request, user, rt, values, error)
    except DialerError as error:
        return _new_campaign_form(request, user, rt, values, error)
    return RedirectResponse(f"/campaigns/{imported.campaign_id}", status_code=303)


# --- one campaign ----------------------------------------------------------------------------


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, campaign_id: RowId, user: SignedInDep, db: SessionDep, rt: RuntimeDep
) -> Response:
    """One campaign's page; its figures come from `/campaigns/{id}/data`. Its buttons are
    the actions the campaign's state allows; a finished campaign (none allowed) offers its
    results first. A draft shows its preview (`GET /v1/campaigns/{id}/preview`) above.
    404 page for a campaign of another account."""
    campaign = api.get_campaign(campaign_id, user.account, db)
    actions = [PAGE_ACTIONS[action] for action in allowed_actions(campaign.status)]
    preview = None
    if campaign.status is CampaignStatus.DRAFT:
        preview = api.preview(campaign_id, user.account, db, rt)
    return templates.TemplateResponse(
        request,
        "campaign.html",
        {
            "account": user.account,
            "csrf_token": user.session.csrf_token,
            "campaign": campaign,
            "actions": actions,
            "preview": preview,
            "exports": EXPORTS,
        },
    )


@dataclass(frozen=True)
class PageExport:
    """A download of the campaign page: its file name (the `/v1` route's) and label."""

    name: str
    label: str


EXPORTS = [
    PageExport("results.csv", "Results (CSV)"),
    PageExport("results.xlsx", "Results (XLSX)"),
    PageExport("attempts.csv", "Attempts (CSV)"),
    PageExport("attempts.xlsx", "Attempts (XLSX)"),
]
"""The campaign's exports the page offers (the rejected rows besides, when there are)."""

ExportName = Literal["results.csv", "attempts.csv", "results.xlsx", "attempts.xlsx", "rejected.csv"]


@router.get("/campaigns/{campaign_id}/data", response_class=JSONResponse)
def campaign_data(
    campaign_id: RowId, user: SignedInDep, db: SessionDep, rt: RuntimeDep
) -> JSONResponse:
    """The campaign's report as JSON: what `GET /v1/campaigns/{id}/report` answers (its
    handler makes it), for the page's script, which has the cookie and no bearer key."""
    return JSONResponse(api.report(campaign_id, user.account, db, rt).model_dump(mode="json"))


@router.get("/campaigns/{campaign_id}/{export}")
def campaign_export(
    campaign_id: RowId, export: ExportName, user: SignedInDep, db: SessionDep, rt: RuntimeDep
) -> Response:
    """A download, as the `/v1` GET of the same name answers it (the rejected rows: 404
    `no_rejected_rows` page when ingest refused none)."""
    if export == "rejected.csv":
        return api.rejected_csv(campaign_id, user.account, db, rt)
    download = {
        "results.csv": api.results_csv,
        "attempts.csv": api.attempts_csv,
        "results.xlsx": api.results_xlsx,
        "attempts.xlsx": api.attempts_xlsx,
    }[export]
    return download(campaign_id, user.account, db)


@router.post("/campaigns/{campaign_id}/{action}")
def campaign_action(
    campaign_id: RowId,
    action: Literal["start", "pause", "resume", "cancel"],
    user: CsrfCheckedDep,
    db: SessionDep,
    hang_up: Annotated[bool, Form()] = False,
) -> Response:
    """Start, pause, resume or cancel, as the `/v1` POSTs of those names do (cancel with
    `hang_up` hangs up the live calls, as `?hang_up=true` does); then the page (303). An
    action the campaign's state does not allow is a 409 page."""
    actor = f"page:{user.account.name}"
    if action == "cancel":
        api.cancel_campaign(campaign_id, user.account, actor, db, hang_up=hang_up)
    else:
        do = {
            "start": api.start_campaign,
            "pause": api.pause_campaign,
            "resume": api.resume_campaign,
        }[action]
        do(campaign_id, user.account, actor, db)
    return RedirectResponse(f"/campaigns/{campaign_id}", status_code=303)


# --- opt-outs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptOutColumn:
    """A column of the opt-outs table: the DNC entry's attribute and its heading."""

    key: str
    label: str


def _opt_out_columns() -> list[OptOutColumn]:
    """Every column of a DNC entry but its account, in the table's order: whatever the
    entries record (the number, the reason, when, and how it came: typed, imported, pressed
    on a call) is shown without the page naming each."""
    labels = {"e164": "Number", "created_at": "Listed (UTC)"}
    return [
        OptOutColumn(column.key, labels.get(column.key, column.key.replace("_", " ").capitalize()))
        for column in inspect(DncEntry).columns
        if column.key != "account_id"
    ]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


@router.get("/opt-outs")
def opt_outs(
    request: Request, user: SignedInDep, db: SessionDep, cursor: PageCursor = None
) -> Response:
    """The account's do-not-call list (`campaigns.dnc.entries`), newest first, one page of
    `campaigns.paging.DEFAULT_LIMIT` entries; a stale cursor is a 400 page."""
    found = dnc.entries(db, user.account.id, limit=DEFAULT_LIMIT, cursor=cursor)
    columns = _opt_out_columns()
    rows = [[_cell(getattr(entry, column.key)) for column in columns] for entry in found.items]
    return templates.TemplateResponse(
        request,
        "opt_outs.html",
        {
            "account": user.account,
            "csrf_token": user.session.csrf_token,
            "columns": columns,
            "rows": rows,
            "next_cursor": found.next_cursor,
            "first_page": cursor is None,
        },
    )
