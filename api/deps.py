"""Typed FastAPI dependencies: the service configuration, the object store, and the caller.

No dependency holds a database connection across the request. Authentication looks the key up
in its own short session (or in the per-process cache of ``api.cache``) and gives the
connection back before the endpoint runs; endpoints open theirs with ``db()`` / ``read_db()``
inside the one thread (or threadpool call) that uses it. A connection is therefore never held
while waiting for a thread: the deadlock that stopped the API at about 50 concurrent requests.
Dependencies that need no database are ``async`` so they cost no thread at all.

The caller is the API key of the ``Authorization: Bearer`` header, or the one the dashboard's
session cookie stands for; a request signed in by the cookie that changes something must also
send the session's CSRF token (``X-CSRF-Token``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.cache import TTLCache
from api.sessions import CSRF_HEADER, SAFE_METHODS, session_ended_message, session_token
from api.throttle import FailedAuthThrottle
from service.config import ServiceConfig, get_config
from service.crud.teams import authenticate, hash_key
from service.crud.web_sessions import SessionState, csrf_matches, lookup_session
from service.db.session import read_scope, session_scope
from service.storage import ObjectStore, get_store

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
db = session_scope  # ``with db() as s:``: a session committed on success, closed at the end
read_db = read_scope  # ``with read_db() as s:``: reads only, no transaction round trips
throttle = FailedAuthThrottle()


@dataclass(frozen=True)
class Caller:
    """Who is calling: the API key's id and its team (every object belongs to a team)."""

    key_id: str
    team_id: str


callers: TTLCache[Caller | None] = TTLCache()


async def config() -> ServiceConfig:
    """The process's configuration (async: FastAPI would run a plain function in a thread)."""
    return get_config()


async def store() -> ObjectStore:
    return get_store()


ConfigDep = Annotated[ServiceConfig, Depends(config)]
StoreDep = Annotated[ObjectStore, Depends(store)]


def _look_up(key: str) -> Caller | None:
    with read_db() as s:
        row = authenticate(s, key=key)
        return Caller(key_id=row.id, team_id=row.team_id) if row is not None else None


def _session_caller(token: str, method: str, csrf: str | None) -> Caller:
    with read_db() as s:
        found = lookup_session(s, token=token)
        if found.state is not SessionState.VALID or found.key is None:
            raise HTTPException(401, session_ended_message(found.state.value),
                                headers={"WWW-Authenticate": "Bearer"})
        caller = Caller(key_id=found.key.id, team_id=found.key.team_id)
    if method not in SAFE_METHODS and not csrf_matches(token, csrf):
        raise HTTPException(403, f"a request signed in by the session cookie must send the page's "
                                 f"{CSRF_HEADER} header")
    return caller


async def current_caller(request: Request, config: ConfigDep,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    token = session_token(request)
    if credentials is None and token is not None:
        return await run_in_threadpool(_session_caller, token, request.method,
                                       request.headers.get(CSRF_HEADER))
    client = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(client, config)
    if wait:
        raise HTTPException(429, f"too many failed authentications from this address; retry in {wait} s",
                            headers={"Retry-After": str(wait)})
    caller = None
    if credentials is not None and len(credentials.credentials) <= 200:
        key = credentials.credentials

        async def look_up() -> Caller | None:
            found = await run_in_threadpool(_look_up, key)
            if found is None:
                raise LookupError  # failures are not cached
            return found

        try:
            caller = await callers.get(hash_key(key), look_up, config.auth_cache_seconds)
        except LookupError:
            caller = None
    if caller is None:
        throttle.failed(client, config)
        raise HTTPException(401, "missing, invalid or revoked API key",
                            headers={"WWW-Authenticate": "Bearer"})
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
