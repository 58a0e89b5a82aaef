"""The audit trail: one row per upload, submission, cancel, delete, download or scoring.

``list_events`` is the one query that reads it: the API's pages, the dashboard's page and the
CSV export all go through it, so a filter means the same thing everywhere and is applied in SQL
(a compliance review of a long trail never loads more than one page into memory)."""

from __future__ import annotations

import enum
from datetime import datetime
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
                action: str | None = None, object_id: str | None = None, api_key_id: str | None = None,
                since: datetime | None = None, until: datetime | None = None) -> list[AuditEvent]:
    """The team's events newest first (by id), at most ``limit``, older than ``before_id`` when
    paging, and only those matching every filter given: the action, the object acted on, the key
    that acted, and created at or after ``since`` and before ``until``."""
    q = select(AuditEvent).where(AuditEvent.team_id == team_id)
    if before_id is not None:
        q = q.where(AuditEvent.id < before_id)
    if action:
        q = q.where(AuditEvent.action == action)
    if object_id:
        q = q.where(AuditEvent.object_id == object_id)
    if api_key_id:
        q = q.where(AuditEvent.api_key_id == api_key_id)
    if since is not None:
        q = q.where(AuditEvent.created_at >= since)
    if until is not None:
        q = q.where(AuditEvent.created_at < until)
    return list(session.scalars(q.order_by(AuditEvent.id.desc()).limit(limit)))
