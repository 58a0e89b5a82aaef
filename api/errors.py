"""Every error is JSON ``{"detail": "one readable line"}``; bad input never becomes a 500.

- HTTP errors keep their status; validation errors are 422 naming the field.
- ``SimudyError`` (bad checkpoint, recipe, settings, dataset) is 422.
- The database away (refused, dropped, no connection free in time) is 503 with Retry-After; a
  value the database cannot store (e.g. a NUL byte that slipped past validation) is 422.
- Storage away is 503.
- Anything else is logged and answered 500 without details.

The OpenAPI document says so (``api/openapi.py``).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import SimudyError
from service.db.session import is_unavailable
from service.storage import StorageError

log = logging.getLogger(__name__)
RETRY_AFTER = {"Retry-After": "5"}


def validation_line(err: RequestValidationError | ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)[:2000]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_line(exc)}, status_code=422)

    @app.exception_handler(SimudyError)
    async def simudy_error(_: Request, exc: SimudyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if is_unavailable(exc):
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                        str(exc).splitlines()[0])
            return JSONResponse({"detail": "the database is unavailable; try again shortly"},
                                status_code=503, headers=RETRY_AFTER)
        if isinstance(exc, DataError):
            return JSONResponse({"detail": "the request holds a value the database cannot store"},
                                status_code=422)
        return await internal_error(request, exc)

    @app.exception_handler(TimeoutError)
    async def pool_timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        log.warning("no database connection free on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "the service is busy; try again shortly"}, status_code=503,
                            headers=RETRY_AFTER)

    @app.exception_handler(StorageError)
    async def storage_error(request: Request, exc: StorageError) -> JSONResponse:
        log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "object storage is unavailable; try again shortly"},
                            status_code=503, headers=RETRY_AFTER)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the service log has the details"},
                            status_code=500)
