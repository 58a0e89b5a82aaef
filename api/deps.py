"""Typed FastAPI dependencies: settings, a database session, the caller's API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.crud.teams import authenticate
from api.db.models import ApiKey
from api.db.session import session_factory
from api.settings import Settings, get_settings
from api.storage import ObjectStore, get_store

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")


def get_session() -> Iterator[Session]:
    session = session_factory()()
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]


def current_key(session: SessionDep,
                credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiKey:
    key = authenticate(session, key=credentials.credentials) if credentials else None
    if key is None:
        raise HTTPException(401, "missing, invalid or revoked API key",
                            headers={"WWW-Authenticate": "Bearer"})
    return key


KeyDep = Annotated[ApiKey, Depends(current_key)]
