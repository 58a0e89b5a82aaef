"""The audit trail as CSV, for a compliance review in a spreadsheet.

The trail is written page by page (``EXPORT_PAGE`` events, each page in its own short read
session), so a long trail is never held in memory and no database connection waits on a slow
client. Spreadsheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and some a tab or
carriage return before one) as a formula, and event details hold what users typed (file and job
names): such a cell is written with a leading ``'``, which shows it as text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone

from api.deps import read_db
from service.crud.audit import list_events
from service.crud.teams import key_prefixes
from service.db.models import AuditEvent

COLUMNS = ["id", "created_at", "action", "object_type", "object_id", "api_key_id", "key_prefix", "detail"]
EXPORT_PAGE = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_text(cell: str) -> str:
    """The cell as a spreadsheet will show it, never run it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_row(event: AuditEvent, prefixes: dict[str, str]) -> list[str]:
    detail = json.dumps(event.detail, separators=(",", ":"), ensure_ascii=False) if event.detail else ""
    cells = [str(event.id), utc_iso(event.created_at), event.action, event.object_type, event.object_id,
             event.api_key_id or "", prefixes.get(event.api_key_id or "", ""), detail]
    return [as_text(cell) for cell in cells]


def _lines(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def csv_chunks(*, team_id: str, before_id: int, filters: dict) -> Iterator[str]:
    """The header, then the team's events older than ``before_id`` that match ``filters`` (the
    keyword filters of ``list_events``), newest first, one chunk per page."""
    yield _lines([COLUMNS])
    with read_db() as s:
        prefixes = key_prefixes(s, team_id=team_id)
    while True:
        with read_db() as s:
            page = list_events(s, team_id=team_id, limit=EXPORT_PAGE, before_id=before_id, **filters)
            chunk = _lines([event_row(e, prefixes) for e in page])
        if chunk:
            yield chunk
        if len(page) < EXPORT_PAGE:
            return
        before_id = page[-1].id
