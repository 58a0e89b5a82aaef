"""The FastAPI application factory. Start-up also starts the stale-job sweep, so jobs of a dead
worker are re-queued even when only the API runs (``make run``)."""

from __future__ import annotations

import gc

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.body_limit import BodyLimit
from api.errors import install_error_handlers
from api.openapi import install_openapi
from api.routes import audit, catalog, checkpoints, health, jobs, reports
from api.web.site import install_web
from service.config import ServiceConfig, get_config
from service.limits import published_maxima

DESCRIPTION = """Reconstruct the training images of a neural network from its initial and final
weights (SimuDy, ICLR 2025), to audit what it memorised. Authenticate with
`Authorization: Bearer <API key>` (`simudy admin create-key --team NAME`), or from the dashboard
(at `/`) with its session cookie and the `X-CSRF-Token` header."""


def create_app(config: ServiceConfig | None = None, *, sweep: bool = True) -> FastAPI:
    config = config or get_config()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything loaded so far (FastAPI, SQLAlchemy, torch...) lives as long as the process:
        # take it out of the collector's view, or each full collection walks millions of
        # objects while every request waits (pauses of 100-240 ms, the p99 under load).
        gc.collect()
        gc.freeze()
        sweeper = None
        if sweep:
            from service.sweep import SweepThread

            sweeper = SweepThread(config)
            sweeper.start()
        try:
            yield
        finally:
            if sweeper:
                sweeper.stop()

    # /docs is our own page (api.web.api_docs): Swagger UI and ReDoc load their code from a CDN
    app = FastAPI(title="simudy", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    install_error_handlers(app)
    for module in (health, catalog, checkpoints, jobs, reports, audit):
        app.include_router(module.router)
    install_web(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_json_bytes)
    install_openapi(app, maxima=published_maxima(config))
    return app

