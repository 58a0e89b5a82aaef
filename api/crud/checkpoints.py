"""Uploaded checkpoints (theta0 / thetaf), unique per team by content hash."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import Checkpoint


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
