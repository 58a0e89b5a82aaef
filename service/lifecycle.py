"""Every status change of a job, in one place.

A job is ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``; a job with an
lr search starts in phase ``lr_search`` (its candidates run as separate tasks) and moves to
phase ``run`` when the last candidate closes the search. Each transition below is one
conditional UPDATE, so concurrent workers, sweeps and API calls never both win:

- ``create``                  -> queued (API, submit)
- ``request_cancel``          queued -> cancelled; running: the flag its worker checks (API)
- ``claim_run``               queued | stale running -> running, with a new lease token (worker)
- ``beat`` / ``record_progress`` only while the lease is the caller's (worker)
- ``finish``                  running -> succeeded | failed | cancelled (worker, lease)
- ``release``                 running -> queued: resume elsewhere (worker shutdown, transient error)
- ``requeue_stale``           running without heartbeat -> queued, or failed after the attempts
                              policy, or cancelled if asked (sweep)
- ``claim_candidate`` / ``candidate_done`` / ``release_candidate`` one lr candidate
- ``close_lr_search``         the last candidate: phase run + chosen lr (core's ``best_index``),
                              or failed / cancelled

A worker's writes are conditioned on its lease token, so a redelivered message or a sweep
re-queue never has two workers writing one job.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from core.lr_search import best_index
from service.config import ServiceConfig
from service.db.models import Job, LossPoint, LrCandidate, new_id, utcnow
from service.db.session import session_scope, with_db_retry


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
STOPPED = frozenset({JobStatus.FAILED.value, JobStatus.CANCELLED.value})  # final, with no results
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


class Phase(str, enum.Enum):
    LR_SEARCH = "lr_search"
    RUN = "run"


class CandidateStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def attempts_exhausted(attempts: int, config: ServiceConfig) -> bool:
    """The attempts policy: a job runs at most ``max_attempts`` times."""
    return attempts > config.max_attempts


def _stale(config: ServiceConfig):  # noqa: ANN202
    return utcnow() - timedelta(seconds=config.heartbeat_timeout_seconds)


def _write(fn) -> Any:  # noqa: ANN001
    """Run ``fn(session)`` in its own transaction, again after a dropped connection."""
    def go() -> Any:
        with session_scope() as s:
            return fn(s)
    return with_db_retry(go)


# -- API side ----------------------------------------------------------------------------------
def create(session: Session, *, team_id: str, name: str | None, theta0_id: str | None,
           thetaf_id: str, recipe: dict[str, Any], settings: dict[str, Any],
           lr_candidates: list[float]) -> Job:
    job = Job(team_id=team_id, name=name, theta0_id=theta0_id, thetaf_id=thetaf_id,
              recipe=recipe, settings=settings, iterations=int(settings["iterations"]),
              phase=(Phase.LR_SEARCH if lr_candidates else Phase.RUN).value,
              status=JobStatus.QUEUED.value)
    session.add(job)
    session.flush()
    for i, lr in enumerate(lr_candidates):
        session.add(LrCandidate(job_id=job.id, index=i, lr=lr, status=CandidateStatus.PENDING.value))
    session.flush()
    return job


def request_cancel(session: Session, *, job: Job) -> None:
    """A queued job is cancelled at once; a running one is asked to stop (its worker checks)."""
    session.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.QUEUED.value)
                    .values(status=JobStatus.CANCELLED.value, finished_at=utcnow(),
                            cancel_requested=True))
    session.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.RUNNING.value)
                    .values(cancel_requested=True))
    session.flush()
    session.refresh(job)


def is_final(status: str) -> bool:
    return status in {s.value for s in FINAL}


# -- a run's lease (worker side) -----------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    job_id: str
    token: str

    def owns(self):  # noqa: ANN201
        return and_(Job.id == self.job_id, Job.lease_token == self.token,
                    Job.status == JobStatus.RUNNING.value)


def claim_run(job_id: str, *, worker: str, config: ServiceConfig) -> Lease | None:
    """Take a queued job (or one whose worker stopped beating); None if another holds it."""
    token, now = new_id(), utcnow()
    stale = _stale(config)

    def go(s: Session) -> int:
        res = s.execute(update(Job).where(
            Job.id == job_id, Job.phase == Phase.RUN.value, Job.cancel_requested.is_(False),
            or_(Job.status == JobStatus.QUEUED.value,
                and_(Job.status == JobStatus.RUNNING.value, Job.heartbeat_at < stale)),
        ).values(status=JobStatus.RUNNING.value, lease_token=token, worker=worker, heartbeat_at=now,
                 attempts=Job.attempts + 1, error=None))
        if res.rowcount == 1:
            s.execute(update(Job).where(Job.id == job_id, Job.started_at.is_(None)).values(started_at=now))
        return res.rowcount

    return Lease(job_id, token) if _write(go) == 1 else None


def attempts_of(job_id: str) -> int:
    def go(s: Session) -> int:
        return int(s.scalar(select(Job.attempts).where(Job.id == job_id)) or 0)
    return _write(go)


def beat(lease: Lease) -> bool:
    return _write(lambda s: s.execute(update(Job).where(lease.owns())
                                      .values(heartbeat_at=utcnow())).rowcount) == 1


def update_owned(lease: Lease, **values: Any) -> bool:
    return _write(lambda s: s.execute(update(Job).where(lease.owns()).values(**values)).rowcount) == 1


def start_from(lease: Lease, iteration: int) -> bool:
    """The run (re)starts at ``iteration``: it owns the curve from there on, so points an
    earlier attempt wrote after that iteration are dropped (a restart from 0 drops them all)."""
    def go(s: Session) -> int:
        n = s.execute(update(Job).where(lease.owns()).values(
            resumed_from=iteration if iteration else None, iteration=iteration,
            state_iteration=iteration if iteration else None)).rowcount
        if n == 1:
            s.execute(delete(LossPoint).where(LossPoint.job_id == lease.job_id,
                                              LossPoint.iteration > iteration))
        return n
    return _write(go) == 1


def record_progress(lease: Lease, points: list[dict[str, Any]], **progress: Any) -> bool:
    """Write metric points and progress in one transaction, only while the lease is ours.
    ``points``: ``{"iteration": i, "values": {metric: value}}``."""
    def go(s: Session) -> int:
        n = s.execute(update(Job).where(lease.owns()).values(heartbeat_at=utcnow(), **progress)).rowcount
        if n == 1 and points:
            s.add_all(LossPoint(job_id=lease.job_id, iteration=p["iteration"], values=p["values"])
                      for p in points)
        return n
    return _write(go) == 1


def finish(lease: Lease, status: JobStatus, *, error: str | None = None, **values: Any) -> bool:
    assert status in FINAL
    return update_owned(lease, status=status.value, error=error, finished_at=utcnow(),
                        lease_token=None, **values)


def release(lease: Lease) -> bool:
    """Give the job back to the queue (shutdown, transient failure); it resumes from its state."""
    return update_owned(lease, status=JobStatus.QUEUED.value, lease_token=None, enqueued_at=None)


def cancel_requested(job_id: str) -> bool:
    return bool(_write(lambda s: s.scalar(select(Job.cancel_requested).where(Job.id == job_id))))


# -- lr candidates -----------------------------------------------------------------------------
def claim_candidate(job_id: str, index: int, *, config: ServiceConfig) -> bool:
    now, stale = utcnow(), _stale(config)

    def go(s: Session) -> int:
        job = s.scalar(select(Job).where(Job.id == job_id))
        if job is None or job.phase != Phase.LR_SEARCH.value or job.status not in {a.value for a in ACTIVE} \
                or job.cancel_requested:
            return 0
        n = s.execute(update(LrCandidate).where(
            LrCandidate.job_id == job_id, LrCandidate.index == index,
            or_(LrCandidate.status == CandidateStatus.PENDING.value,
                and_(LrCandidate.status == CandidateStatus.RUNNING.value, LrCandidate.heartbeat_at < stale)),
        ).values(status=CandidateStatus.RUNNING.value, heartbeat_at=now)).rowcount
        if n == 1:
            s.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
                      .values(status=JobStatus.RUNNING.value, started_at=now, heartbeat_at=now))
        return n
    return _write(go) == 1


def _candidate(job_id: str, index: int, status: CandidateStatus):  # noqa: ANN202
    return and_(LrCandidate.job_id == job_id, LrCandidate.index == index,
                LrCandidate.status == status.value)


def beat_candidate(job_id: str, index: int) -> bool:
    return _write(lambda s: s.execute(update(LrCandidate).where(
        _candidate(job_id, index, CandidateStatus.RUNNING)).values(heartbeat_at=utcnow())).rowcount) == 1


def candidate_done(job_id: str, index: int, *, score: float | None, error: str | None) -> None:
    status = CandidateStatus.DONE if error is None else CandidateStatus.FAILED
    _write(lambda s: s.execute(update(LrCandidate).where(
        _candidate(job_id, index, CandidateStatus.RUNNING)).values(
            status=status.value, score=score, error=error)))


def release_candidate(job_id: str, index: int) -> None:
    """A transient failure: the candidate is pending again (its task is retried)."""
    _write(lambda s: s.execute(update(LrCandidate).where(
        _candidate(job_id, index, CandidateStatus.RUNNING)).values(status=CandidateStatus.PENDING.value)))


def close_lr_search(job_id: str) -> str | None:
    """If every candidate has finished, move the job to its full run (once: a conditional
    UPDATE on the phase decides which finishing task wins). Returns 'run', 'failed',
    'cancelled' or None (not all finished, or another task won)."""
    def go(s: Session) -> str | None:
        rows = s.scalars(select(LrCandidate).where(LrCandidate.job_id == job_id)
                         .order_by(LrCandidate.index)).all()
        open_ = (CandidateStatus.PENDING.value, CandidateStatus.RUNNING.value)
        if not rows or any(c.status in open_ for c in rows):
            return None
        base = update(Job).where(Job.id == job_id, Job.phase == Phase.LR_SEARCH.value,
                                 Job.status.in_([a.value for a in ACTIVE]))
        if s.scalar(select(Job.cancel_requested).where(Job.id == job_id)):
            n = s.execute(base.values(status=JobStatus.CANCELLED.value, finished_at=utcnow())).rowcount
            return "cancelled" if n else None
        best = best_index([c.score if c.status == CandidateStatus.DONE.value else None for c in rows])
        if best is None:
            errors = "; ".join(sorted({c.error or "no score" for c in rows}))
            n = s.execute(base.values(status=JobStatus.FAILED.value, finished_at=utcnow(),
                                      error=f"every lr candidate failed: {errors}")).rowcount
            return "failed" if n else None
        n = s.execute(base.values(phase=Phase.RUN.value, status=JobStatus.QUEUED.value,
                                  chosen_lr=rows[best].lr, enqueued_at=None)).rowcount
        return "run" if n else None
    return _write(go)


def lr_scores(job_id: str) -> list[dict[str, Any]] | None:
    """The scored candidates of a job's lr search, in order (for its summary)."""
    def go(s: Session) -> list[dict[str, Any]] | None:
        rows = s.scalars(select(LrCandidate).where(LrCandidate.job_id == job_id)
                         .order_by(LrCandidate.index)).all()
        return [{"lr": c.lr, "score": c.score} for c in rows if c.score is not None] or None
    return _write(go)


# -- the sweep ---------------------------------------------------------------------------------
@dataclass
class SweepResult:
    requeued: list[str]
    failed: list[str]
    candidates: list[tuple[str, int]]  # (job id, index) made pending again
    unsent: list[tuple[str, str]]  # (job id, phase) never handed to the broker


def requeue_stale(config: ServiceConfig) -> SweepResult:
    """Work whose worker stopped beating: re-queued, failed when its attempts are used up
    (the attempts policy), or cancelled when that was asked; and active jobs whose message
    never reached the broker."""
    stale = _stale(config)
    out = SweepResult([], [], [], [])
    with session_scope() as s:
        dead = s.execute(select(Job.id, Job.attempts, Job.cancel_requested, Job.lease_token).where(
            Job.status == JobStatus.RUNNING.value, Job.phase == Phase.RUN.value,
            Job.heartbeat_at < stale)).all()
        for job_id, attempts, cancel, token in dead:
            cond = and_(Job.id == job_id, Job.status == JobStatus.RUNNING.value,
                        Job.lease_token == token, Job.heartbeat_at < stale)
            if cancel:
                values = {"status": JobStatus.CANCELLED.value, "finished_at": utcnow(), "lease_token": None}
            elif attempts_exhausted(attempts + 1, config):
                values = {"status": JobStatus.FAILED.value, "finished_at": utcnow(), "lease_token": None,
                          "error": f"the worker died {attempts} times (no heartbeat); giving up"}
            else:
                values = {"status": JobStatus.QUEUED.value, "lease_token": None, "enqueued_at": None,
                          "error": None}
            if s.execute(update(Job).where(cond).values(**values)).rowcount == 1:
                (out.requeued if values["status"] == JobStatus.QUEUED.value else out.failed).append(job_id)
        for job_id, index in s.execute(select(LrCandidate.job_id, LrCandidate.index).where(
                LrCandidate.status == CandidateStatus.RUNNING.value, LrCandidate.heartbeat_at < stale)).all():
            n = s.execute(update(LrCandidate).where(
                _candidate(job_id, index, CandidateStatus.RUNNING), LrCandidate.heartbeat_at < stale,
            ).values(status=CandidateStatus.PENDING.value)).rowcount
            if n:
                out.candidates.append((job_id, index))
        out.unsent = [(j, p) for j, p in s.execute(select(Job.id, Job.phase).where(
            Job.status.in_([a.value for a in ACTIVE]), Job.enqueued_at.is_(None),
            Job.cancel_requested.is_(False))).all() if j not in out.requeued]
    return out


def pending_candidates(job_id: str) -> list[int]:
    return _write(lambda s: list(s.scalars(select(LrCandidate.index).where(
        LrCandidate.job_id == job_id, LrCandidate.status == CandidateStatus.PENDING.value))))


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
