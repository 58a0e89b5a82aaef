"""Celery tasks. They receive ids only; everything else is read from the database."""

from __future__ import annotations

import logging

import torch  # noqa: F401 - imported once in the parent so each fresh child starts fast (no CUDA init)
from celery import signals

from service import lifecycle
from service.config import get_config
from service.queue import RUN_TASK, SCORE_LR_TASK
from worker.celery_app import get_app
from worker.run import is_transient

log = logging.getLogger(__name__)
app = get_app()
TRANSIENT_RETRIES = 5


@signals.worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    """A forked child must not share the parent's database connections."""
    from service.db.session import engine_for

    engine_for.cache_clear()


@signals.worker_ready.connect
def _start_sweep(sender=None, **_: object) -> None:  # noqa: ANN001
    from service.sweep import SweepThread

    SweepThread(get_config()).start()


@signals.worker_shutting_down.connect
def _stop_children(**_: object) -> None:
    """Warm shutdown: ask the running job to save its state and give itself back."""
    import os
    import signal

    import billiard

    for child in billiard.process.active_children():
        try:
            os.kill(child.pid, signal.SIGTERM)
        except (OSError, TypeError):
            pass


@app.task(name=RUN_TASK, bind=True, max_retries=TRANSIENT_RETRIES)
def run_job(self, job_id: str) -> str:  # noqa: ANN001
    from worker.run import run_job as run

    try:
        outcome = run(job_id, worker=self.request.hostname or "worker", config=get_config())
    except Exception as err:
        if not is_transient(err):
            raise
        log.warning("job %s: transient failure, retrying: %s", job_id, err)
        raise self.retry(exc=err, countdown=5 * (self.request.retries + 1))
    log.info("job %s: %s", job_id, outcome)
    return outcome


@app.task(name=SCORE_LR_TASK, bind=True, max_retries=TRANSIENT_RETRIES)
def score_lr(self, job_id: str, index: int) -> str:  # noqa: ANN001
    from worker.lr import score_lr as score

    try:
        outcome = score(job_id, index, config=get_config())
    except Exception as err:
        if not is_transient(err):
            raise
        _quietly(lambda: lifecycle.release_candidate(job_id, index))
        raise self.retry(exc=err, countdown=5 * (self.request.retries + 1))
    log.info("job %s lr candidate %d: %s", job_id, index, outcome)
    return outcome


def _quietly(fn) -> None:  # noqa: ANN001
    """Best effort: if the database is down too, the sweep re-queues after the heartbeat timeout."""
    try:
        fn()
    except Exception:  # noqa: BLE001
        pass
