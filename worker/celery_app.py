"""The Celery application. One job at a time per worker (``-c 1``, prefetch 1), each in a fresh
child process (``max_tasks_per_child=1``) so GPU memory is returned and CUDA is never
initialised in the parent; late acks so a lost worker's message is not lost."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from api.settings import Settings, get_settings

GPU_QUEUE = "gpu"


def make_celery(settings: Settings) -> Celery:
    app = Celery("simudy", broker=settings.broker_url, include=["worker.tasks"])
    transport: dict = {}
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # longer than the longest job, so a running job's message is never handed out twice
        transport["visibility_timeout"] = settings.max_job_seconds + 3600
        if settings.queue_prefix:
            transport["global_keyprefix"] = settings.queue_prefix
    app.conf.update(
        task_default_queue=GPU_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # the heartbeat sweep re-queues, counting attempts
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_max_tasks_per_child=1,
        task_ignore_result=True,
        task_time_limit=settings.max_job_seconds + 900,
        task_soft_time_limit=settings.max_job_seconds + 600,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_serializer="json", accept_content=["json"],
    )
    return app


@lru_cache(maxsize=1)
def get_app() -> Celery:
    return make_celery(get_settings())
