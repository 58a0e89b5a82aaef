"""Jobs as the API sees them: create, read, list (cursor pages), cancel, delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from api.crud.pages import newest_first
from api.db.models import Artifact, Job, LossPoint, LrCandidate, utcnow


def create_job(session: Session, *, team_id: str, name: str | None, theta0_id: str,
               thetaf_id: str, recipe: dict[str, Any], settings: dict[str, Any],
               lr_candidates: list[float]) -> Job:
    job = Job(team_id=team_id, name=name, theta0_id=theta0_id, thetaf_id=thetaf_id,
              recipe=recipe, settings=settings, iterations=int(settings["iterations"]),
              phase="lr_search" if lr_candidates else "run", status="queued")
    session.add(job)
    session.flush()
    for i, lr in enumerate(lr_candidates):
        session.add(LrCandidate(job_id=job.id, index=i, lr=lr))
    session.flush()
    return job


def get_job(session: Session, *, team_id: str, job_id: str) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.team_id == team_id))


def list_jobs(session: Session, *, team_id: str, status: str | None, limit: int,
              cursor: str | None) -> tuple[list[Job], str | None]:
    q = select(Job).where(Job.team_id == team_id)
    if status:
        q = q.where(Job.status == status)
    return newest_first(session, q, Job, limit=limit, cursor=cursor)


def request_cancel(session: Session, *, job: Job) -> None:
    """A queued job is cancelled at once; a running one is asked to stop (its worker checks)."""
    now = utcnow()
    session.execute(update(Job).where(Job.id == job.id, Job.status == "queued")
                    .values(status="cancelled", finished_at=now, cancel_requested=True))
    session.execute(update(Job).where(Job.id == job.id, Job.status == "running")
                    .values(cancel_requested=True))
    session.flush()
    session.refresh(job)


def loss_points(session: Session, *, job_id: str) -> list[LossPoint]:
    return list(session.scalars(select(LossPoint).where(LossPoint.job_id == job_id)
                                .order_by(LossPoint.iteration)))


def get_artifact(session: Session, *, job_id: str, kind: str) -> Artifact | None:
    return session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == kind))


def put_artifact(session: Session, *, job_id: str, kind: str, storage_key: str, size_bytes: int,
                 content_type: str) -> None:
    session.execute(delete(Artifact).where(Artifact.job_id == job_id, Artifact.kind == kind))
    session.add(Artifact(job_id=job_id, kind=kind, storage_key=storage_key, size_bytes=size_bytes,
                         content_type=content_type))
    session.flush()


def delete_job(session: Session, *, job: Job) -> None:
    session.delete(job)
    session.flush()
