"""The dashboard's session cookie and CSRF rule, shared by the /v1 key dependency and the web
pages. The cookie is HttpOnly (page scripts never see it), SameSite=Lax (other sites' requests
do not carry it, except top-level links, which are GETs), Secure when the request came over
HTTPS. A request authenticated by the cookie that changes something must also send the
session's CSRF token (header ``X-CSRF-Token`` or form field ``csrf_token``), which a page of
another origin cannot read."""

from __future__ import annotations

from fastapi import Request, Response

SESSION_COOKIE = "simudy_session"
LOGIN_CSRF_COOKIE = "simudy_signin"  # double-submit token of the sign-in form (before a session)
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax",
                           secure=request.url.scheme == "https")


def session_ended_message(state: str) -> str:
    """What a signed-out browser is told, by why its session no longer works."""
    return {"revoked": "Your API key was revoked: sign in with a current key.",
            "expired": "Your session expired: sign in again.",
            }.get(state, "You are signed out: sign in with your team's API key.")
