"""Rendering a dashboard page: the Jinja2 environment (autoescaped), the signed-in caller taken
from the session cookie (or a redirect to the sign-in page saying why), and the headers every
page carries (a strict content security policy: our own scripts and styles only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from api.deps import read_db
from api.sessions import session_token
from service.crud.web_sessions import SessionState, csrf_token, lookup_session
from service.db.models import ApiKey
from service.provenance import simudy_version

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


@dataclass(frozen=True)
class Viewer:
    """The signed-in browser: its API key (and so its team) and the CSRF token of its session."""

    key: ApiKey
    csrf: str

    @property
    def team_id(self) -> str:
        return self.key.team_id


class SignInNeeded(Exception):
    """Raised by ``current_viewer``; answered with a redirect to the sign-in page."""

    def __init__(self, reason: str, next_path: str) -> None:
        super().__init__(reason)
        self.reason, self.next_path = reason, next_path


def current_viewer(request: Request) -> Viewer:
    token = session_token(request)
    found = None
    if token:
        with read_db() as session:
            found = lookup_session(session, token=token)
    if found is None or found.state is not SessionState.VALID or found.key is None:
        raise SignInNeeded(found.state.value if found is not None else "", request.url.path)
    return Viewer(found.key, csrf_token(token))


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def sign_in_redirect(exc: SignInNeeded) -> RedirectResponse:
    query = {"reason": exc.reason} if exc.reason else {}
    if exc.next_path.startswith("/") and not exc.next_path.startswith("//") and exc.next_path != "/signin":
        query["next"] = exc.next_path
    return RedirectResponse("/signin" + ("?" + urlencode(query) if query else ""), status_code=303)


def page(request: Request, template: str, viewer: Viewer | None, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(
        request, template, {"viewer": viewer, "csrf": viewer.csrf if viewer else "",
                            "version": simudy_version(), **context}, status_code=status_code)
    response.headers.update(PAGE_HEADERS)
    return response
