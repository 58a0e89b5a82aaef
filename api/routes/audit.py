"""``GET /v1/audit``: the team's trail of uploads, submissions, cancels, deletes, downloads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.crud.audit import list_events
from api.deps import KeyDep, SessionDep
from api.schemas import AuditEventPublic, AuditList

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=AuditList)
def get_audit(key: KeyDep, session: SessionDep,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
              action: Annotated[str | None, Query(examples=["upload"])] = None) -> AuditList:
    if cursor is not None and not cursor.isdigit():
        raise HTTPException(400, "invalid cursor")
    rows = list_events(session, team_id=key.team_id, limit=limit + 1,
                       before_id=int(cursor) if cursor else None, action=action)
    page = rows[:limit]
    return AuditList(data=[AuditEventPublic.model_validate(r) for r in page], count=len(page),
                     next_cursor=str(page[-1].id) if len(rows) > limit else None)
