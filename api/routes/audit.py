"""``GET /v1/audit``: the team's trail of uploads, submissions, cancels, deletes, downloads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import CallerDep, db
from api.schemas import AuditEventPublic, AuditList, Message
from service.crud.audit import AuditAction, list_events

router = APIRouter(prefix="/v1/audit", tags=["audit"])
MAX_EVENT_ID = 2**31 - 1  # the id column is a 32-bit integer


@router.get("", response_model=AuditList, responses={400: {"model": Message}})
def get_audit(caller: CallerDep,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              cursor: Annotated[str | None, Query(max_length=20, description="next_cursor of the previous page")] = None,
              action: Annotated[AuditAction | None, Query(examples=["upload"])] = None,
              ) -> AuditList:
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and 0 < int(cursor) <= MAX_EVENT_ID):
        raise HTTPException(400, "invalid cursor")
    with db() as s:
        rows = list_events(s, team_id=caller.team_id, limit=limit + 1,
                           before_id=int(cursor) if cursor else None,
                           action=action.value if action else None)
        page = rows[:limit]
        return AuditList(data=[AuditEventPublic.model_validate(r) for r in page], count=len(page),
                         next_cursor=str(page[-1].id) if len(rows) > limit else None)
