"""Atomic job ownership in the database. A worker claims a job with a conditional UPDATE and
gets a lease token; every later write is conditioned on that token, so a redelivered message or
a sweep re-queue never has two workers writing one job."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from api.db.models import Job, LossPoint, LrCandidate, new_id, utcnow
from api.db.session import session_scope, with_db_retry
from api.settings import Settings


def claim_run(job_id: str, *, worker: str, settings: Settings) -> str | None:
    """Take a queued job (or one whose worker stopped beating); return the lease token."""
    token = new_id()
    now = utcnow()
    stale = now - timedelta(seconds=settings.heartbeat_timeout_seconds)

    def go() -> int:
        with session_scope() as s:
            res = s.execute(update(Job).where(
                Job.id == job_id, Job.phase == "run", Job.cancel_requested.is_(False),
                or_(Job.status == "queued",
                    and_(Job.status == "running", Job.heartbeat_at < stale)),
            ).values(status="running", lease_token=token, worker=worker, heartbeat_at=now,
                     attempts=Job.attempts + 1, error=None))
            if res.rowcount == 1:
                s.execute(update(Job).where(Job.id == job_id, Job.started_at.is_(None))
                          .values(started_at=now))
            return res.rowcount

    return token if with_db_retry(go) == 1 else None


def _owned(job_id: str, token: str):  # noqa: ANN202
    return and_(Job.id == job_id, Job.lease_token == token, Job.status == "running")


def beat(job_id: str, token: str) -> bool:
    def go() -> int:
        with session_scope() as s:
            return s.execute(update(Job).where(_owned(job_id, token))
                             .values(heartbeat_at=utcnow())).rowcount
    return with_db_retry(go) == 1


def update_owned(job_id: str, token: str, **values: Any) -> bool:
    def go() -> int:
        with session_scope() as s:
            return s.execute(update(Job).where(_owned(job_id, token)).values(**values)).rowcount
    return with_db_retry(go) == 1


def finish(job_id: str, token: str, status: str, *, error: str | None = None, **values: Any) -> bool:
    return update_owned(job_id, token, status=status, error=error, finished_at=utcnow(),
                        lease_token=None, **values)


def release(job_id: str, token: str) -> bool:
    """Give the job back to the queue (shutdown, transient failure); it resumes from its state."""
    return update_owned(job_id, token, status="queued", lease_token=None, enqueued_at=None)


def cancel_requested(job_id: str) -> bool:
    def go() -> bool:
        with session_scope() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    return with_db_retry(go)


def add_loss_points(job_id: str, token: str, points: list[dict[str, float]], **progress: Any) -> bool:
    """Write points and progress in one transaction, only while the lease is ours."""
    def go() -> int:
        with session_scope() as s:
            n = s.execute(update(Job).where(_owned(job_id, token))
                          .values(heartbeat_at=utcnow(), **progress)).rowcount
            if n == 1 and points:
                s.add_all(LossPoint(job_id=job_id, **p) for p in points)
            return n
    return with_db_retry(go) == 1


def drop_loss_points_after(job_id: str, iteration: int) -> None:
    with session_scope() as s:
        s.execute(delete(LossPoint).where(LossPoint.job_id == job_id, LossPoint.iteration > iteration))


# -- lr candidates ---------------------------------------------------------------------------
def claim_candidate(job_id: str, index: int, *, settings: Settings) -> bool:
    now = utcnow()
    stale = now - timedelta(seconds=settings.heartbeat_timeout_seconds)

    def go() -> int:
        with session_scope() as s:
            job = s.scalar(select(Job).where(Job.id == job_id))
            if job is None or job.phase != "lr_search" or job.status not in ("queued", "running") \
                    or job.cancel_requested:
                return 0
            n = s.execute(update(LrCandidate).where(
                LrCandidate.job_id == job_id, LrCandidate.index == index,
                or_(LrCandidate.status == "pending",
                    and_(LrCandidate.status == "running", LrCandidate.heartbeat_at < stale)),
            ).values(status="running", heartbeat_at=now)).rowcount
            if n == 1:
                s.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                          .values(status="running", started_at=now, heartbeat_at=now))
            return n
    return with_db_retry(go) == 1


def beat_candidate(job_id: str, index: int) -> bool:
    def go() -> int:
        with session_scope() as s:
            return s.execute(update(LrCandidate).where(
                LrCandidate.job_id == job_id, LrCandidate.index == index,
                LrCandidate.status == "running").values(heartbeat_at=utcnow())).rowcount
    return with_db_retry(go) == 1


def candidate_done(job_id: str, index: int, *, score: float | None, error: str | None) -> None:
    def go() -> None:
        with session_scope() as s:
            s.execute(update(LrCandidate).where(
                LrCandidate.job_id == job_id, LrCandidate.index == index,
                LrCandidate.status == "running",
            ).values(status="done" if error is None else "failed", score=score, error=error))
    with_db_retry(go)


def close_lr_search(job_id: str) -> str | None:
    """If every candidate has finished, move the job to its full run (once: a conditional
    UPDATE on the phase decides which finishing task wins). Returns 'run', 'failed',
    'cancelled' or None (not all finished, or another task won)."""
    def go() -> str | None:
        with session_scope() as s:
            rows = s.scalars(select(LrCandidate).where(LrCandidate.job_id == job_id)).all()
            if not rows or any(c.status in ("pending", "running") for c in rows):
                return None
            scored = [c for c in rows if c.status == "done" and c.score is not None]
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == job_id))
            base = update(Job).where(Job.id == job_id, Job.phase == "lr_search",
                                     Job.status.in_(("queued", "running")))
            if cancel:
                n = s.execute(base.values(status="cancelled", finished_at=utcnow())).rowcount
                return "cancelled" if n else None
            if not scored:
                errors = "; ".join(sorted({c.error or "no score" for c in rows}))
                n = s.execute(base.values(status="failed", finished_at=utcnow(),
                                          error=f"every lr candidate failed: {errors}")).rowcount
                return "failed" if n else None
            best = min(scored, key=lambda c: (c.score, c.index))
            n = s.execute(base.values(phase="run", status="queued", chosen_lr=best.lr,
                                      enqueued_at=None)).rowcount
            return "run" if n else None
    return with_db_retry(go)


class Heartbeat(threading.Thread):
    """Beats every ``interval`` seconds; sets ``lost`` when the lease is gone."""

    def __init__(self, beat_fn, interval: float) -> None:  # noqa: ANN001
        super().__init__(daemon=True, name="simudy-heartbeat")
        self.beat_fn, self.interval = beat_fn, interval
        self.lost = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                if not self.beat_fn():
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a hiccup; the next beat retries
                continue

    def stop(self) -> None:
        self._halt.set()
