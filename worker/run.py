"""One full reconstruction run of a job: claim its lease, drive the engine's ``Pipeline`` (the
same sequence ``simudy reconstruct`` runs) under a ``JobMonitor``, and map the outcome to the
job's status. The monitor turns progress into throttled metric points and heartbeats, answers
stop requests (lost lease, shutdown, time limit, cancel), saves the state every few minutes and
stores a preview of the current images every ``SIMUDY_PREVIEW_SECONDS``."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from typing import Any

from core.errors import SimudyError
from core.grids import reconstruction_grid_png
from core.methods.base import Progress
from core.outputs import jsonable
from core.pipeline import Pipeline
from service import lifecycle
from service.config import ServiceConfig
from service.inputs import load_inputs
from service.lifecycle import JobStatus, Lease
from service.queue import enqueue_run
from service.results import state_file, store_file
from service.storage import get_store
from service.storage.base import job_key, retrying

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


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


class JobMonitor:
    """What watches a job's run (``core.pipeline.Monitor``): progress, stop, state saving."""

    def __init__(self, lease: Lease, pipeline: Pipeline, team_id: str, state_key: str | None,
                 config: ServiceConfig, heartbeat: lifecycle.Heartbeat, stop: StopSignal) -> None:
        self.lease, self.pipeline, self.config = lease, pipeline, config
        self.state_key = state_key  # the state the job row records now (None: none saved yet)
        self.team_id = team_id
        self.heartbeat, self.stop = heartbeat, stop
        self.pending: list[dict[str, Any]] = []
        self.deadline = time.monotonic() + config.max_job_seconds
        self.last_flush = self.last_cancel_check = 0.0
        self.last_save = time.monotonic()
        self.last_preview: float | None = None  # None: store the first preview at once
        self.why: str | None = None  # lost | shutdown | time-limit | cancel

    def on_progress(self, p: Progress) -> None:
        self.pending.append({"iteration": p.iteration,
                             "values": {k: _finite(v) for k, v in p.metrics.items()}})
        # the preview first: a client that sees progress finds the images of it
        if self.last_preview is None or time.monotonic() - self.last_preview >= self.config.preview_seconds:
            self.store_preview()
        if time.monotonic() - self.last_flush >= self.config.progress_flush_seconds:
            self.flush(p)

    def store_preview(self) -> None:
        """The images as they are now, as ``preview.png`` (the dashboard shows it live)."""
        method = self.pipeline.method
        assert method is not None
        png = reconstruction_grid_png(method.preview_images())
        store_file(team_id=self.team_id, job_id=self.lease.job_id, name="preview.png", data=png)
        self.last_preview = time.monotonic()

    def flush(self, p: Progress | None = None) -> None:
        progress = {} if p is None else {"iteration": p.iteration, "loss": _finite(p.loss),
                                         "eta_seconds": p.eta_seconds}
        if not lifecycle.record_progress(self.lease, list(self.pending), **progress):
            self.heartbeat.lost.set()
        self.pending.clear()
        self.last_flush = time.monotonic()

    def save_state(self) -> None:
        """The curve must reach the saved iteration first, or a resume would leave a gap; and
        only the lease's owner may record a state (a worker that lost its lease during an
        outage must not leave a state ahead of the curve the next attempt continues)."""
        method = self.pipeline.method
        assert method is not None
        self.last_save = time.monotonic()
        if self.pending:
            self.flush(method.progress())
        if self.heartbeat.lost.is_set():
            return
        store = get_store()
        key = job_key(self.team_id, self.lease.job_id, state_file(method.iteration))
        data = self.pipeline.state_bytes()
        retrying(lambda: store.put_bytes(key, data))
        if not lifecycle.update_owned(self.lease, state_iteration=method.iteration):
            self.heartbeat.lost.set()
            if key != self.state_key:
                store.delete(key)
            return
        if self.state_key is not None and self.state_key != key:
            store.delete(self.state_key)
        self.state_key = key

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self.heartbeat.lost.is_set():
            self.why = "lost"
        elif self.stop.event.is_set():
            self.why = "shutdown"
        elif now > self.deadline:
            self.why = "time-limit"
        elif now - self.last_cancel_check >= self.config.cancel_check_seconds:
            self.last_cancel_check = now
            if lifecycle.cancel_requested(self.lease.job_id):
                self.why = "cancel"
        if self.why is None and now - self.last_save >= self.config.state_save_seconds:
            self.save_state()
        return self.why is not None


def run_job(job_id: str, *, worker: str, config: ServiceConfig) -> str:
    """Returns what happened (for logs and tests): not-claimed, succeeded, failed, cancelled,
    released, lost."""
    lease = lifecycle.claim_run(job_id, worker=worker, config=config)
    if lease is None:
        return "not-claimed"
    if lifecycle.attempts_exhausted(lifecycle.attempts_of(job_id), config):
        lifecycle.finish(lease, JobStatus.FAILED, error=f"gave up after {config.max_attempts} "
                         "attempts (the worker died each time)")
        return "failed"
    heartbeat = lifecycle.Heartbeat(lambda: lifecycle.beat(lease), config.heartbeat_seconds)
    heartbeat.start()
    try:
        with StopSignal() as stop:
            return _run_claimed(lease, heartbeat, stop, config)
    except Exception as err:
        if is_transient(err):  # give the job back (if the database answers) before the retry
            try:
                lifecycle.release(lease)
            except Exception:  # noqa: BLE001 - the sweep re-queues it after the heartbeat timeout
                pass
        raise
    finally:
        heartbeat.stop()


def _run_claimed(lease: Lease, heartbeat: lifecycle.Heartbeat, stop: StopSignal,
                 config: ServiceConfig) -> str:
    """Every failure of the job's own making ends it ``failed`` with a readable error at once;
    only infrastructure hiccups (database, storage) propagate, to be retried."""
    job_id = lease.job_id
    store = get_store()
    try:
        inputs = load_inputs(job_id)
        state_key = state = None
        if inputs.state_iteration is not None:
            state_key = job_key(inputs.team_id, job_id, state_file(inputs.state_iteration))
            if store.exists(state_key):
                state = retrying(lambda: store.get_bytes(state_key))
            else:
                log.warning("job %s: its state at iteration %d is gone; starting again from 0",
                            job_id, inputs.state_iteration)
                state_key = None
        pipeline = Pipeline(inputs.method_inputs, inputs.settings, config.execution())
        method = pipeline.start(lr=inputs.chosen_lr, state=state, lr_scores=lifecycle.lr_scores(job_id))
        lifecycle.start_from(lease, method.iteration)  # this run owns the curve from here on
        if method.iteration:
            log.info("job %s resumes at iteration %d", job_id, method.iteration)
        monitor = JobMonitor(lease, pipeline, inputs.team_id, state_key, config, heartbeat, stop)
        finished = pipeline.run(monitor)
    except SimudyError as err:  # bad inputs, non-finite loss, out of GPU memory (with the advice)
        lifecycle.finish(lease, JobStatus.FAILED, error=str(err))
        return "failed"
    except Exception as err:  # noqa: BLE001 - the engine's own failure: keep it readable
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(err, SoftTimeLimitExceeded):
            lifecycle.finish(lease, JobStatus.FAILED, error="time limit exceeded")
            return "failed"
        if is_transient(err):
            raise
        log.exception("job %s failed", job_id)
        lifecycle.finish(lease, JobStatus.FAILED, error=f"internal error: {type(err).__name__}: "
                                                        f"{str(err).splitlines()[0][:300] if str(err) else ''}")
        return "failed"

    if monitor.pending:
        monitor.flush(method.progress())
    if not finished:
        if monitor.why == "lost":
            return "lost"
        if monitor.why == "cancel":
            lifecycle.finish(lease, JobStatus.CANCELLED)
            return "cancelled"
        monitor.save_state()
        if monitor.why == "time-limit":
            lifecycle.finish(lease, JobStatus.FAILED,
                             error=f"time limit of {config.max_job_seconds} s exceeded at iteration "
                                   f"{method.iteration} (state saved)")
            return "failed"
        lifecycle.release(lease)  # shutdown: the next worker resumes
        enqueue_run(job_id)
        return "released"

    outputs = pipeline.finalize()
    if heartbeat.lost.is_set():
        return "lost"
    for name, data in outputs.files().items():
        store_file(team_id=inputs.team_id, job_id=job_id, name=name, data=data)
    p = method.progress()
    ok = lifecycle.finish(lease, JobStatus.SUCCEEDED, iteration=p.iteration, loss=_finite(p.loss),
                          eta_seconds=0.0, summary=jsonable(outputs.summary))
    if ok and monitor.state_key is not None:
        store.delete(monitor.state_key)
    return "succeeded" if ok else "lost"


def is_transient(err: BaseException) -> bool:
    """Storage and database hiccups: the task is retried (and resumes from its state)."""
    from service.db.session import is_unavailable
    from service.storage import StorageError

    return isinstance(err, StorageError) or is_unavailable(err)
