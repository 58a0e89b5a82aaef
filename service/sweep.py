"""Re-queue work whose worker died: running jobs without a heartbeat for
``SIMUDY_HEARTBEAT_TIMEOUT_SECONDS``, lr candidates likewise, and queued jobs whose message
never reached the broker. Runs as a thread in the API and in every worker's parent process;
the conditional UPDATEs of ``lifecycle.requeue_stale`` make concurrent sweeps harmless."""

from __future__ import annotations

import logging
import threading

from service import lifecycle
from service.config import ServiceConfig
from service.lifecycle import Phase, SweepResult
from service.queue import enqueue_lr_candidates, enqueue_run

log = logging.getLogger(__name__)


def sweep_once(config: ServiceConfig) -> SweepResult:
    result = lifecycle.requeue_stale(config)
    for job_id in result.requeued:
        log.warning("job %s: no heartbeat, re-queued", job_id)
        enqueue_run(job_id)
    for job_id, phase in result.unsent:
        if phase == Phase.RUN.value:
            enqueue_run(job_id)
        else:
            enqueue_lr_candidates(job_id, lifecycle.pending_candidates(job_id))
    by_job: dict[str, list[int]] = {}
    for job_id, index in result.candidates:
        by_job.setdefault(job_id, []).append(index)
    for job_id, indices in by_job.items():
        enqueue_lr_candidates(job_id, indices)
    return result


class SweepThread(threading.Thread):
    def __init__(self, config: ServiceConfig) -> None:
        super().__init__(daemon=True, name="simudy-sweep")
        self.config = config
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.config.sweep_interval_seconds):
            try:
                sweep_once(self.config)
            except Exception as err:  # noqa: BLE001 - database or broker down: try again later
                log.warning("sweep failed: %s", err)

    def stop(self) -> None:
        self._halt.set()
