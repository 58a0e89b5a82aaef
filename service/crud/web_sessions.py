"""Dashboard sign-in sessions. The browser's cookie holds a random token; only its sha256 is
stored, so a database leak gives no usable session. A session acts as its API key: a revoked
key makes every one of its sessions fail at the next request, with no extra bookkeeping. The
CSRF token of a session is a second, differently prefixed hash of its token: only whoever holds
the cookie can compute it, and nothing more is stored."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.db.models import ApiKey, WebSession, utcnow


class SessionState(str, enum.Enum):
    VALID = "valid"
    MISSING = "missing"  # no such session (never made, signed out, or expired and removed)
    EXPIRED = "expired"
    REVOKED = "revoked"  # its API key was revoked


@dataclass(frozen=True)
class SessionLookup:
    state: SessionState
    key: ApiKey | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose cookie holds ``token`` (a different hash of it)."""
    return hashlib.sha256(b"simudy-csrf:" + token.encode()).hexdigest()


def csrf_matches(token: str, candidate: str | None) -> bool:
    return bool(candidate) and secrets.compare_digest(csrf_token(token), candidate or "")


def create_session(session: Session, *, key: ApiKey, lifetime_seconds: float) -> str:
    """Store a new session for ``key``; return the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(WebSession(token_hash=_hash(token), api_key_id=key.id, created_at=now,
                           expires_at=now + timedelta(seconds=lifetime_seconds)))
    session.execute(delete(WebSession).where(WebSession.expires_at < now))  # tidy old ones
    session.flush()
    return token


def lookup_session(session: Session, *, token: str) -> SessionLookup:
    row = session.scalar(select(WebSession).where(WebSession.token_hash == _hash(token)))
    if row is None:
        return SessionLookup(SessionState.MISSING)
    if row.expires_at <= utcnow():
        return SessionLookup(SessionState.EXPIRED)
    if row.api_key.revoked_at is not None:
        return SessionLookup(SessionState.REVOKED)
    return SessionLookup(SessionState.VALID, row.api_key)


def end_session(session: Session, *, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))
    session.flush()
