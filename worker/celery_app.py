"""The worker's Celery application: the shared configuration (``service.queue``) plus this
package's tasks."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from service.config import get_config
from service.queue import make_celery


@lru_cache(maxsize=1)
def get_app() -> Celery:
    return make_celery(get_config(), include=("worker.tasks",))
