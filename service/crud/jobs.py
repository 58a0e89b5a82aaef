"""Jobs as the API sees them: read, list (cursor pages), their metric points and artifacts,
delete. (Creating and cancelling a job are status transitions: ``service.lifecycle``.)"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.crud.pages import newest_first
from service.db.models import Artifact, Job, LossPoint


def get_job_by_id(session: Session, *, job_id: str) -> Job:
    """A job by id alone (no team scope): for code that already holds the id of its own job."""
    return session.scalars(select(Job).where(Job.id == job_id)).one()


def get_job(session: Session, *, team_id: str, job_id: str) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.team_id == team_id))


def list_jobs(session: Session, *, team_id: str, status: str | None, limit: int,
              cursor: str | None) -> tuple[list[Job], str | None]:
    q = select(Job).where(Job.team_id == team_id)
    if status:
        q = q.where(Job.status == status)
    return newest_first(session, q, Job, limit=limit, cursor=cursor)


def loss_points(session: Session, *, job_id: str) -> list[LossPoint]:
    return list(session.scalars(select(LossPoint).where(LossPoint.job_id == job_id)
                                .order_by(LossPoint.iteration)))


def has_loss_points(session: Session, *, job_id: str) -> bool:
    return session.scalar(select(LossPoint.iteration).where(LossPoint.job_id == job_id).limit(1)) is not None


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
