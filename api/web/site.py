"""Mounting the dashboard on the API's application: the static files, the sign-in routes, the
pages, the API reference (``/docs``), and the redirect to the sign-in page when a page is opened without a session."""


from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.web import api_docs, auth, pages
from api.web.render import SignInNeeded, sign_in_redirect

STATIC = Path(__file__).parent / "static"


def install_web(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.include_router(api_docs.router)

    @app.exception_handler(SignInNeeded)
    async def _sign_in(_: object, exc: SignInNeeded):  # noqa: ANN202
        return sign_in_redirect(exc)
