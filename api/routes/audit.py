"""``GET /v1/audit``: the team's trail of uploads, submissions, cancels, deletes, downloads, by
page or, for a compliance review, whole as CSV (``/v1/audit/export.csv``); both take the same
filters (``AuditFilters``).

An export is itself recorded, as a download of the ``audit_trail`` with the filters it used,
before the file is written: who took a copy of the trail, and of which part, is part of the
trail. The file holds the events before that record, so it is the trail as it stood when asked
for, however long it takes to stream; the export shows in the next one."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from api.audit_csv import COLUMNS, csv_chunks
from api.deps import CallerDep, db
from api.schemas import AuditEventPublic, AuditFilters, AuditList, Message
from service.crud import audit
from service.crud.teams import team_name

router = APIRouter(prefix="/v1/audit", tags=["audit"])
MAX_EVENT_ID = 2**31 - 1  # the id column is a 32-bit integer
FiltersDep = Annotated[AuditFilters, Query()]


@router.get("", response_model=AuditList, responses={400: {"model": Message}})
def get_audit(caller: CallerDep, filters: FiltersDep,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              cursor: Annotated[str | None, Query(max_length=20, description="next_cursor of the previous page")] = None,
              ) -> AuditList:
    """The team's events, newest first; pass the same filters with the cursor for the next page."""
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and 0 < int(cursor) <= MAX_EVENT_ID):
        raise HTTPException(400, "invalid cursor")
    with db() as s:
        rows = audit.list_events(s, team_id=caller.team_id, limit=limit + 1,
                                 before_id=int(cursor) if cursor else None, **filters.model_dump())
        page = rows[:limit]
        return AuditList(data=[AuditEventPublic.model_validate(r) for r in page], count=len(page),
                         next_cursor=str(page[-1].id) if len(rows) > limit else None)


def export_filename(team: str, day: datetime) -> str:
    """``simudy-audit-<team>-<UTC date>.csv``, the team's name reduced to what any header and
    file system take."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", team).strip("-") or "team"
    return f"simudy-audit-{slug}-{day:%Y-%m-%d}.csv"


@router.get("/export.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "columns " + ",".join(COLUMNS)}})
def export_audit(caller: CallerDep, filters: FiltersDep) -> StreamingResponse:
    """The team's whole filtered trail as CSV, newest first (no paging), up to this export,
    which is recorded as a download of the audit trail."""
    with db() as s:
        filename = export_filename(team_name(s, team_id=caller.team_id), datetime.now(timezone.utc))
        query = filters.query_string()
        export = audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="download",
                              object_type="audit_trail", object_id=caller.team_id,
                              detail={"file": filename, **({"filters": query} if query else {})})
        s.flush()
        export_id = export.id
    return StreamingResponse(csv_chunks(team_id=caller.team_id, before_id=export_id, filters=filters.model_dump()),
                             media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
