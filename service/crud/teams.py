"""Teams and their API keys. A key is shown once; only its sha256 is stored, and it is compared
in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.errors import SimudyError
from service.db.models import ApiKey, AuditEvent, Team, utcnow

KEY_PREFIX = "sdk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_team(session: Session, *, name: str) -> Team:
    name = name.strip()
    if not name or len(name) > 100:
        raise SimudyError("a team name needs 1 to 100 characters")
    if session.scalar(select(Team).where(Team.name == name)):
        raise SimudyError(f"team {name!r} already exists")
    team = Team(name=name)
    session.add(team)
    session.flush()
    return team


def team_name(session: Session, *, team_id: str) -> str:
    return session.scalar(select(Team.name).where(Team.id == team_id))


def get_team_by_name(session: Session, *, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise SimudyError(f"no team named {name!r}")
    return team


def create_key(session: Session, *, team: Team) -> tuple[ApiKey, str]:
    """Return the row and the key itself (``sdk_<prefix>_<secret>``), which is never stored."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(team_id=team.id, prefix=prefix, key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return row, key


def list_teams(session: Session) -> list[tuple[Team, int]]:
    """Every team, by name, with its number of live (unrevoked) keys."""
    live = (select(ApiKey.team_id, func.count().label("n")).where(ApiKey.revoked_at.is_(None))
            .group_by(ApiKey.team_id).subquery())
    rows = session.execute(select(Team, func.coalesce(live.c.n, 0)).outerjoin(live, live.c.team_id == Team.id)
                           .order_by(Team.name))
    return [(team, int(n)) for team, n in rows]


def list_keys(session: Session, *, team: Team | None = None,
              include_revoked: bool = False) -> list[tuple[ApiKey, datetime | None]]:
    """Keys (of ``team``, or of every team), oldest first, each with the time of its last
    action in the audit trail (None: never used)."""
    last = (select(AuditEvent.api_key_id, func.max(AuditEvent.created_at).label("at"))
            .group_by(AuditEvent.api_key_id).subquery())
    q = select(ApiKey, last.c.at).outerjoin(last, last.c.api_key_id == ApiKey.id)
    if team is not None:
        q = q.where(ApiKey.team_id == team.id)
    if not include_revoked:
        q = q.where(ApiKey.revoked_at.is_(None))
    return [(key, at) for key, at in session.execute(q.order_by(ApiKey.created_at, ApiKey.id))]


def revoke_key(session: Session, *, id_or_prefix: str) -> ApiKey:
    needle = id_or_prefix.strip()
    if needle.startswith(KEY_PREFIX):
        needle = needle[len(KEY_PREFIX):].split("_", 1)[0]
    if not needle:
        raise SimudyError("give a key id or prefix")
    rows = session.scalars(select(ApiKey).where(or_(ApiKey.id == needle, ApiKey.prefix == needle))).all()
    if not rows:
        raise SimudyError(f"no API key with id or prefix {id_or_prefix!r}")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def identify(session: Session, *, key: str) -> ApiKey | None:
    """The key row for ``key`` whether or not it was revoked, or None (compared in constant time)."""
    prefix = key[len(KEY_PREFIX):].split("_", 1)[0] if key.startswith(KEY_PREFIX) else ""
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix)) if prefix else None
    expected = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(hash_key(key), expected) or row is None:
        return None
    return row


def authenticate(session: Session, *, key: str) -> ApiKey | None:
    """The live key row for ``key``, or None."""
    row = identify(session, key=key)
    return row if row is not None and row.revoked_at is None else None


def key_prefixes(session: Session, *, team_id: str) -> dict[str, str]:
    """Each of the team's key ids (revoked ones too) and the prefix that shows it to people."""
    return dict(session.execute(select(ApiKey.id, ApiKey.prefix).where(ApiKey.team_id == team_id)).all())
