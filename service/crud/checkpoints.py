"""Uploaded checkpoints (theta0 / thetaf), unique per team by content hash."""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from service.crud.pages import newest_first
from service.db.models import Checkpoint, Job


def get_checkpoint(session: Session, *, team_id: str, checkpoint_id: str) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.id == checkpoint_id,
                                                   Checkpoint.team_id == team_id))


def find_by_hash(session: Session, *, team_id: str, sha256: str) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.team_id == team_id,
                                                   Checkpoint.sha256 == sha256))


def add_checkpoint(session: Session, *, checkpoint: Checkpoint) -> Checkpoint:
    session.add(checkpoint)
    session.flush()
    return checkpoint


def list_checkpoints(session: Session, *, team_id: str, limit: int,
                     cursor: str | None) -> tuple[list[Checkpoint], str | None]:
    return newest_first(session, select(Checkpoint).where(Checkpoint.team_id == team_id), Checkpoint,
                        limit=limit, cursor=cursor)


def jobs_using(session: Session, *, checkpoint_id: str) -> int:
    """How many jobs name this checkpoint as theta0 or thetaf (they keep it from being deleted)."""
    return session.scalar(select(func.count()).select_from(Job).where(
        or_(Job.theta0_id == checkpoint_id, Job.thetaf_id == checkpoint_id)))


def delete_checkpoint(session: Session, *, checkpoint: Checkpoint) -> None:
    session.execute(delete(Checkpoint).where(Checkpoint.id == checkpoint.id))
    session.flush()
