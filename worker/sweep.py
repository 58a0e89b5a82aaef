"""Re-queue work whose worker died: running jobs without a heartbeat for
``SIMUDY_HEARTBEAT_TIMEOUT_SECONDS``, lr candidates likewise, and queued jobs whose message
never reached the broker. Runs as a thread in the API and in every worker's parent process;
conditional UPDATEs make concurrent sweeps harmless."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import and_, select, update

from api.db.models import Job, LrCandidate, utcnow
from api.db.session import session_scope
from api.settings import Settings

log = logging.getLogger(__name__)


def sweep_once(settings: Settings) -> dict[str, list]:
    from api.queue import enqueue_lr_candidates, enqueue_run

    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds)
    requeued, failed, candidates, unsent = [], [], [], []
    with session_scope() as s:
        dead = s.execute(select(Job.id, Job.attempts, Job.cancel_requested, Job.lease_token).where(
            Job.status == "running", Job.phase == "run", Job.heartbeat_at < stale)).all()
        for job_id, attempts, cancel, token in dead:
            cond = and_(Job.id == job_id, Job.status == "running", Job.lease_token == token,
                        Job.heartbeat_at < stale)
            if cancel:
                values = {"status": "cancelled", "finished_at": utcnow(), "lease_token": None}
            elif attempts >= settings.max_attempts:
                values = {"status": "failed", "finished_at": utcnow(), "lease_token": None,
                          "error": f"the worker died {attempts} times (no heartbeat); giving up"}
            else:
                values = {"status": "queued", "lease_token": None, "enqueued_at": None,
                          "error": None}
            if s.execute(update(Job).where(cond).values(**values)).rowcount == 1:
                (requeued if values["status"] == "queued" else failed).append(job_id)
        for job_id, index in s.execute(select(LrCandidate.job_id, LrCandidate.index).where(
                LrCandidate.status == "running", LrCandidate.heartbeat_at < stale)).all():
            n = s.execute(update(LrCandidate).where(
                LrCandidate.job_id == job_id, LrCandidate.index == index,
                LrCandidate.status == "running", LrCandidate.heartbeat_at < stale,
            ).values(status="pending")).rowcount
            if n:
                candidates.append((job_id, index))
        unsent = s.execute(select(Job.id, Job.phase).where(
            Job.status.in_(("queued", "running")), Job.enqueued_at.is_(None),
            Job.cancel_requested.is_(False))).all()
    for job_id in requeued:
        log.warning("job %s: no heartbeat, re-queued", job_id)
        enqueue_run(job_id)
    for job_id, phase in unsent:
        if job_id in requeued:
            continue
        if phase == "run":
            enqueue_run(job_id)
        else:
            with session_scope() as s:
                pending = s.scalars(select(LrCandidate.index).where(
                    LrCandidate.job_id == job_id, LrCandidate.status == "pending")).all()
            enqueue_lr_candidates(job_id, list(pending))
    by_job: dict[str, list[int]] = {}
    for job_id, index in candidates:
        by_job.setdefault(job_id, []).append(index)
    for job_id, indices in by_job.items():
        enqueue_lr_candidates(job_id, indices)
    return {"requeued": requeued, "failed": failed, "candidates": candidates,
            "unsent": [j for j, _ in unsent]}


class SweepThread(threading.Thread):
    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="simudy-sweep")
        self.settings = settings
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.settings.sweep_interval_seconds):
            try:
                sweep_once(self.settings)
            except Exception as err:  # noqa: BLE001 - database or broker down: try again later
                log.warning("sweep failed: %s", err)

    def stop(self) -> None:
        self._halt.set()
