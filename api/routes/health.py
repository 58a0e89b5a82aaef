"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: database, broker and
storage reachable; 503 naming what is down)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.config import get_config
from service.db.session import get_engine
from service.storage import get_store

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}})
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database() -> None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_broker() -> None:
    from service.queue import check_broker

    check_broker()


def _check_storage() -> None:
    get_store().check()


def readiness() -> dict[str, str]:
    checks = {}
    for name, fn in (("database", _check_database), ("broker", _check_broker),
                     ("storage", _check_storage)):
        try:
            fn()
            checks[name] = "ok"
        except Exception as err:  # noqa: BLE001 - any failure means not ready
            checks[name] = f"down: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    return checks


@router.get("/readyz", responses={503: {"content": {"application/json": {"example": {
    "detail": "not ready: broker down", "checks": {"database": "ok", "broker": "down: ...",
                                                   "storage": "ok"}}}}}})
async def readyz() -> JSONResponse:
    get_config()
    checks = await run_in_threadpool(readiness)
    down = [k for k, v in checks.items() if v != "ok"]
    if down:
        return JSONResponse({"detail": f"not ready: {', '.join(down)} down", "checks": checks},
                            status_code=503)
    return JSONResponse({"status": "ready", "checks": checks})
