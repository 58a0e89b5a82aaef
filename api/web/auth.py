"""Signing the dashboard in and out. The API key is posted once in a form body (never a URL),
checked like a Bearer key, and exchanged for a server-side session (``service.crud.web_sessions``);
the browser keeps only the session's random token, in an HttpOnly cookie. The sign-in form is
protected against login CSRF by a double-submit token (a cookie and a hidden field that must
match), sign-out by the session's CSRF token."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import ConfigDep, db, read_db, throttle
from api.sessions import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    session_ended_message,
    session_token,
    set_cookie,
)
from api.web.render import page
from service.crud import audit
from service.crud.teams import identify
from service.crud.web_sessions import (
    SessionState,
    create_session,
    csrf_matches,
    end_session,
    lookup_session,
)

router = APIRouter(include_in_schema=False)
SIGN_IN_FORM_SECONDS = 3600


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/jobs"


def _sign_in_page(request: Request, *, message: str | None, status_code: int = 200,
                  next_path: str = "/jobs", notice: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(request, "signin.html", None, status_code=status_code, message=message,
                    notice=notice, form_token=token, next_path=next_path, title="Sign in")
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, SIGN_IN_FORM_SECONDS)
    return response


@router.get("/signin")
def sign_in_form(request: Request, reason: str | None = None,
                 next: str | None = None) -> Response:  # noqa: A002
    token = session_token(request)
    if token:
        with read_db() as session:
            valid = lookup_session(session, token=token).state is SessionState.VALID
        if valid:
            return RedirectResponse(safe_next(next), status_code=303)
    notice = None
    if reason == "signed-out":
        notice = "You signed out."
    elif reason:
        notice = session_ended_message(reason)
    return _sign_in_page(request, message=None, notice=notice, next_path=safe_next(next))


@router.post("/signin")
def sign_in(request: Request, config: ConfigDep,
            api_key: Annotated[str, Form(max_length=200)] = "",
            csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
            next: Annotated[str, Form(max_length=500)] = "/jobs") -> Response:  # noqa: A002
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, csrf_token):
        return _sign_in_page(request, status_code=403, next_path=safe_next(next),
                             message="The sign-in form expired or came from another site: try again.")
    client = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(client, config)
    if wait:  # the same throttle as a Bearer key guessed at /v1
        return _sign_in_page(request, status_code=429, next_path=safe_next(next),
                             message=f"Too many failed sign-ins from this address: try again in {wait} s.")
    with db() as session:
        key = identify(session, key=api_key.strip()) if api_key.strip() else None
        if key is None or key.revoked_at is not None:
            throttle.failed(client, config)
        if key is None:
            return _sign_in_page(request, status_code=401, next_path=safe_next(next),
                                 message="That API key is not valid. Check it and try again "
                                         "(simudy admin create-key --team NAME makes one).")
        if key.revoked_at is not None:
            return _sign_in_page(request, status_code=401, next_path=safe_next(next),
                                 message=f"That API key was revoked on {key.revoked_at:%Y-%m-%d %H:%M} "
                                         "UTC: ask your team for a current one.")
        token = create_session(session, key=key, lifetime_seconds=config.session_hours * 3600)
        audit.record(session, team_id=key.team_id, api_key_id=key.id, action="sign_in",
                     object_type="api_key", object_id=key.id)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, int(config.session_hours * 3600))
    clear_cookie(request, response, LOGIN_CSRF_COOKIE)
    return response


@router.post("/signout")
def sign_out(request: Request,
             csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "") -> Response:
    token = session_token(request)
    if token and csrf_matches(token, csrf_token):
        with db() as session:
            found = lookup_session(session, token=token)
            end_session(session, token=token)
            if found.key is not None:
                audit.record(session, team_id=found.key.team_id, api_key_id=found.key.id,
                             action="sign_out", object_type="api_key", object_id=found.key.id)
    elif token:  # a sign-out posted from elsewhere: do nothing, show where the user is
        return RedirectResponse("/jobs", status_code=303)
    response = RedirectResponse("/signin?reason=signed-out", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response
