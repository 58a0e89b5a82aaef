"""Cursor pages, newest first, for any table with ``created_at`` and ``id``: a page never
repeats or skips a row while rows are being added."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from service.db.models import is_id

Row = TypeVar("Row")


class BadCursor(ValueError):
    pass


def encode_cursor(row: Any) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of the last row of a page; anything we did not encode is ``BadCursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        when = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError, TypeError):
        raise BadCursor("invalid cursor") from None
    if when.tzinfo is None or not is_id(row_id):
        raise BadCursor("invalid cursor")
    return when, row_id


def newest_first(session: Session, query: Select, model: type[Row], *, limit: int,
                 cursor: str | None) -> tuple[list[Row], str | None]:
    """One page of ``query`` and the cursor of the next page (None on the last)."""
    if cursor:
        stamp, row_id = decode_cursor(cursor)
        query = query.where(or_(model.created_at < stamp,
                                and_(model.created_at == stamp, model.id < row_id)))
    rows = list(session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor
