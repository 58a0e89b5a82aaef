"""Hand work to the workers by task name, so the API never imports the engine's run code."""

from __future__ import annotations

import logging

from sqlalchemy import update

from api.db.models import Job, utcnow
from api.db.session import session_scope

log = logging.getLogger(__name__)
GPU_QUEUE = "gpu"


def _app():  # noqa: ANN202
    from worker.celery_app import get_app

    return get_app()


def enqueue_run(job_id: str) -> bool:
    """Send ``simudy.run_job``; record ``enqueued_at``. False (the sweep sends it later) when
    the broker is down."""
    try:
        _app().send_task("simudy.run_job", args=[job_id], queue=GPU_QUEUE)
    except Exception as err:  # broker unreachable: the sweep retries
        log.warning("could not queue job %s: %s", job_id, err)
        return False
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))
    return True


def enqueue_lr_candidates(job_id: str, indices: list[int]) -> bool:
    """Send one ``simudy.score_lr`` per candidate (a group: they run in parallel)."""
    try:
        from celery import group

        app = _app()
        group(app.signature("simudy.score_lr", args=[job_id, i], queue=GPU_QUEUE)
              for i in indices).apply_async()
    except Exception as err:
        log.warning("could not queue lr candidates of %s: %s", job_id, err)
        return False
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))
    return True
