"""One full reconstruction run of a job, resumable: claim, load inputs and the last saved
state, run the engine with throttled progress/heartbeat/cancel checks, save the state every
few minutes and when stopped, store the results."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from typing import Any

from sqlalchemy import select

from api.crud.jobs import put_artifact
from api.db.models import Job, LrCandidate
from api.db.session import session_scope, with_db_retry
from api.settings import Settings
from api.storage import get_store
from api.storage.base import job_key, retrying
from core.errors import SimudyError
from worker import leases
from worker.inputs import device_for, load_inputs

log = logging.getLogger(__name__)


class StopSignal:
    """SIGTERM/SIGINT in the child: stop at the next check, save, give the job back."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _store_artifact(job_id: str, team_id: str, kind: str, name: str, data: bytes, ctype: str) -> None:
    key = job_key(team_id, job_id, name)
    retrying(lambda: get_store().put_bytes(key, data))

    def go() -> None:
        with session_scope() as s:
            put_artifact(s, job_id=job_id, kind=kind, storage_key=key, size_bytes=len(data),
                         content_type=ctype)
    with_db_retry(go)


def _lr_scores(job_id: str) -> list[dict[str, Any]] | None:
    with session_scope() as s:
        rows = s.scalars(select(LrCandidate).where(LrCandidate.job_id == job_id)
                         .order_by(LrCandidate.index)).all()
        return [{"lr": c.lr, "score": c.score} for c in rows if c.score is not None] or None


def run_job(job_id: str, *, worker: str, settings: Settings) -> str:
    """Returns what happened (for logs and tests): claimed-by-other, succeeded, failed,
    cancelled, released, lost."""
    token = leases.claim_run(job_id, worker=worker, settings=settings)
    if token is None:
        return "not-claimed"
    with session_scope() as s:
        attempts = s.scalar(select(Job.attempts).where(Job.id == job_id))
    if attempts > settings.max_attempts:
        leases.finish(job_id, token, "failed",
                      error=f"gave up after {settings.max_attempts} attempts (the worker died each time)")
        return "failed"
    hb = leases.Heartbeat(lambda: leases.beat(job_id, token), settings.heartbeat_seconds)
    hb.start()
    try:
        with StopSignal() as stop:
            return _run_claimed(job_id, token, hb, stop, settings)
    finally:
        hb.stop()


def _run_claimed(job_id: str, token: str, hb: leases.Heartbeat, stop: StopSignal,
                 settings: Settings) -> str:
    from core import lr_search, outputs, state_io
    from core.methods import get_method

    try:
        inputs = load_inputs(job_id)
        rs = inputs.settings
        if inputs.chosen_lr is not None:
            rs = lr_search.with_lr(rs, inputs.chosen_lr)
        device = device_for(rs, settings)
        recon = get_method(rs.method)(inputs.theta0, inputs.thetaf, inputs.recipe, rs, device=device)
    except SimudyError as err:
        leases.finish(job_id, token, "failed", error=str(err))
        return "failed"

    store = get_store()
    state_key = job_key(inputs.team_id, job_id, "state.pt")
    if store.exists(state_key):
        recon.load_state_dict(state_io.state_from_bytes(retrying(lambda: store.get_bytes(state_key))))
        leases.drop_loss_points_after(job_id, recon.iteration)
        leases.update_owned(job_id, token, resumed_from=recon.iteration, iteration=recon.iteration)
        log.info("job %s resumes at iteration %d", job_id, recon.iteration)

    def save_state() -> None:
        if pending:  # the curve must reach the saved iteration, or a resume leaves a gap
            flush(recon.progress())
        data = state_io.state_to_bytes(recon.state_dict())
        retrying(lambda: store.put_bytes(state_key, data))
        leases.update_owned(job_id, token, state_iteration=recon.iteration)

    deadline = time.monotonic() + settings.max_job_seconds
    pending: list[dict[str, float]] = []
    clock = {"flush": 0.0, "cancel": 0.0, "save": time.monotonic()}
    reason = {"why": None}

    def flush(progress=None) -> None:  # noqa: ANN001
        values: dict[str, Any] = {}
        if progress is not None:
            values = {"iteration": progress.iteration, "loss": _finite(progress.loss),
                      "eta_seconds": progress.eta_seconds}
        if not leases.add_loss_points(job_id, token, list(pending), **values):
            hb.lost.set()
        pending.clear()
        clock["flush"] = time.monotonic()

    def on_progress(p) -> None:  # noqa: ANN001
        pending.append({"iteration": p.iteration, "loss": _finite(p.loss),
                        "cosine": _finite(p.cosine), "tv": _finite(p.tv)})
        if time.monotonic() - clock["flush"] >= settings.progress_flush_seconds:
            flush(p)

    def should_stop() -> bool:
        now = time.monotonic()
        if hb.lost.is_set():
            reason["why"] = "lost"
        elif stop.event.is_set():
            reason["why"] = "shutdown"
        elif now > deadline:
            reason["why"] = "time-limit"
        elif now - clock["cancel"] >= settings.cancel_check_seconds:
            clock["cancel"] = now
            if leases.cancel_requested(job_id):
                reason["why"] = "cancel"
        if reason["why"] is None and now - clock["save"] >= settings.state_save_seconds:
            save_state()
            clock["save"] = time.monotonic()
        return reason["why"] is not None

    try:
        finished = recon.run(on_progress=on_progress, should_stop=should_stop)
    except SimudyError as err:  # non-finite loss, out of GPU memory (with the advice)
        leases.finish(job_id, token, "failed", error=str(err))
        return "failed"
    except Exception as err:  # noqa: BLE001 - the engine's own failure: keep it readable
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(err, SoftTimeLimitExceeded):
            leases.finish(job_id, token, "failed", error="time limit exceeded")
            return "failed"
        if is_transient(err):
            raise
        log.exception("job %s failed", job_id)
        leases.finish(job_id, token, "failed", error=f"internal error: {type(err).__name__}: {err}")
        return "failed"

    if pending:
        flush(recon.progress())
    if not finished:
        why = reason["why"]
        if why == "lost":
            return "lost"
        if why == "cancel":
            leases.finish(job_id, token, "cancelled", error=None)
            return "cancelled"
        save_state()
        if why == "time-limit":
            leases.finish(job_id, token, "failed",
                          error=f"time limit of {settings.max_job_seconds} s exceeded at iteration "
                                f"{recon.iteration} (state saved)")
            return "failed"
        leases.release(job_id, token)  # shutdown: the next worker resumes
        from api.queue import enqueue_run

        enqueue_run(job_id)
        return "released"

    out = outputs.finalize(recon, lr_search=_lr_scores(job_id))
    if hb.lost.is_set():
        return "lost"
    _store_artifact(job_id, inputs.team_id, "reconstruction", "reconstruction.npz", out.npz_bytes,
                    "application/octet-stream")
    _store_artifact(job_id, inputs.team_id, "grid", "grid.png", out.grid_png, "image/png")
    _store_artifact(job_id, inputs.team_id, "loss_csv", "loss.csv", out.loss_csv.encode(), "text/csv")
    p = recon.progress()
    ok = leases.finish(job_id, token, "succeeded", iteration=p.iteration, loss=_finite(p.loss),
                       eta_seconds=0.0, summary=_jsonable(out.summary))
    if ok:
        store.delete(state_key)
    return "succeeded" if ok else "lost"


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _jsonable(obj: Any) -> Any:
    """JSON-safe for both databases: numpy values as lists, NaN/inf as null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if isinstance(obj, float):
        return _finite(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def is_transient(err: BaseException) -> bool:
    """Storage and database hiccups: the task is retried (and resumes from its state)."""
    from sqlalchemy.exc import OperationalError

    from api.storage import StorageError

    return isinstance(err, (OperationalError, StorageError))
