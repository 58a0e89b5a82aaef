"""The audit trail: one row per upload, submission, cancel, delete, download or scoring."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import AuditEvent


class AuditAction(str, enum.Enum):
    """Every action the trail records. ``record`` takes no other, so the API's filter can refuse
    an unknown one (a 422 naming these) instead of answering an empty page."""

    SIGN_IN = "sign_in"
    SIGN_OUT = "sign_out"
    UPLOAD = "upload"
    SUBMIT = "submit"
    CANCEL = "cancel"
    DELETE = "delete"
    DOWNLOAD = "download"
    SCORE = "score"


def record(session: Session, *, team_id: str, api_key_id: str | None, action: str,
           object_type: str, object_id: str, detail: dict[str, Any] | None = None) -> AuditEvent:
    event = AuditEvent(team_id=team_id, api_key_id=api_key_id, action=AuditAction(action).value,
                       object_type=object_type, object_id=object_id, detail=detail)
    session.add(event)
    return event


def list_events(session: Session, *, team_id: str, limit: int, before_id: int | None = None,
                action: str | None = None) -> list[AuditEvent]:
    q = select(AuditEvent).where(AuditEvent.team_id == team_id)
    if before_id is not None:
        q = q.where(AuditEvent.id < before_id)
    if action:
        q = q.where(AuditEvent.action == action)
    return list(session.scalars(q.order_by(AuditEvent.id.desc()).limit(limit)))
