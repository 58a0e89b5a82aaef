"""The task queue: the Celery application (its configuration is shared by the producer here
and the workers in ``worker/``) and the sends. Tasks are sent by name, so nothing here imports
the worker's code.

One job at a time per worker (``-c 1``, prefetch 1), each in a fresh child process
(``max_tasks_per_child=1``) so GPU memory is returned and CUDA is never initialised in the
parent; late acks so a lost worker's message is not lost; the heartbeat sweep, not Celery,
re-queues work whose worker died (and counts attempts).
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import Celery, group
from sqlalchemy import update

from service.config import ServiceConfig, get_config
from service.db.models import Job, utcnow
from service.db.session import session_scope

log = logging.getLogger(__name__)
GPU_QUEUE = "gpu"
RUN_TASK = "simudy.run_job"
SCORE_LR_TASK = "simudy.score_lr"


def make_celery(config: ServiceConfig, *, include: tuple[str, ...] = ()) -> Celery:
    app = Celery("simudy", broker=config.broker_url, include=list(include))
    transport: dict = {}
    if config.broker_url.startswith(("redis://", "rediss://")):
        # longer than the longest job, so a running job's message is never handed out twice
        transport["visibility_timeout"] = config.max_job_seconds + 3600
        if config.queue_prefix:
            transport["global_keyprefix"] = config.queue_prefix
    app.conf.update(
        task_default_queue=GPU_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # the heartbeat sweep re-queues, counting attempts
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_max_tasks_per_child=1,
        task_ignore_result=True,
        task_time_limit=config.max_job_seconds + 900,
        task_soft_time_limit=config.max_job_seconds + 600,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_serializer="json", accept_content=["json"],
    )
    return app


@lru_cache(maxsize=1)
def producer() -> Celery:
    """The Celery app this process sends tasks with."""
    return make_celery(get_config())


def _mark_enqueued(job_id: str) -> None:
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))


def enqueue_run(job_id: str) -> bool:
    """Send the run task; record ``enqueued_at``. False (the sweep sends it later) when the
    broker is down."""
    try:
        producer().send_task(RUN_TASK, args=[job_id], queue=GPU_QUEUE)
    except Exception as err:  # noqa: BLE001 - broker unreachable: the sweep retries
        log.warning("could not queue job %s: %s", job_id, err)
        return False
    _mark_enqueued(job_id)
    return True


def enqueue_lr_candidates(job_id: str, indices: list[int]) -> bool:
    """Send one lr-candidate task per index (a group: they run in parallel)."""
    try:
        app = producer()
        group(app.signature(SCORE_LR_TASK, args=[job_id, i], queue=GPU_QUEUE)
              for i in indices).apply_async()
    except Exception as err:  # noqa: BLE001
        log.warning("could not queue lr candidates of %s: %s", job_id, err)
        return False
    _mark_enqueued(job_id)
    return True


def check_broker() -> None:
    """Raise if the broker cannot be reached (readiness)."""
    with producer().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
