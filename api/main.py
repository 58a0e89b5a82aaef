"""The FastAPI application factory. Start-up also starts the stale-job sweep, so jobs of a dead
worker are re-queued even when only the API runs (``make run``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import audit, catalog, checkpoints, health, jobs
from api.settings import Settings, get_settings

DESCRIPTION = """Reconstruct the training images of a neural network from its initial and final
weights (SimuDy, ICLR 2025), to audit what it memorised. Authenticate with
`Authorization: Bearer <API key>` (`simudy admin create-key --team NAME`)."""


def create_app(settings: Settings | None = None, *, sweep: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeper = None
        if sweep:
            from worker.sweep import SweepThread

            sweeper = SweepThread(settings)
            sweeper.start()
        try:
            yield
        finally:
            if sweeper:
                sweeper.stop()

    app = FastAPI(title="simudy", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    for module in (health, catalog, checkpoints, jobs, audit):
        app.include_router(module.router)
    return app
