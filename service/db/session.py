"""Engines and sessions. SQLite gets WAL, a busy timeout and foreign keys so that the API and a
worker process can share the embedded database."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.config import get_config

T = TypeVar("T")


def make_engine(url: str, **kwargs: object) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


@lru_cache(maxsize=4)
def engine_for(url: str, pool_size: int = 10, max_overflow: int = 10, pool_timeout: float = 10.0) -> Engine:
    if url.startswith("sqlite"):
        return make_engine(url)
    return make_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)


def get_engine() -> Engine:
    config = get_config()
    return engine_for(config.database_url, config.db_pool_size, config.db_max_overflow,
                      config.db_pool_timeout_seconds)


@lru_cache(maxsize=4)
def _sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def session_factory() -> sessionmaker[Session]:
    return _sessionmaker(get_engine())


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session committed on success, rolled back on error."""
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope() -> Iterator[Session]:
    """A session for reads only, in autocommit mode: no BEGIN/COMMIT round trips (each
    statement sees committed data). Writing through it is an error."""
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        session = Session(bind=conn, expire_on_commit=False, autoflush=False)
        try:
            yield session
            if session.new or session.dirty or session.deleted:
                raise RuntimeError("read_scope() is for reads; use session_scope() to write")
        finally:
            session.close()


def with_db_retry(fn: Callable[[], T], *, seconds: float | None = None, delay: float = 0.5) -> T:
    """Run ``fn`` (which opens its own session) again after a dropped connection or a lock,
    backing off up to 5 s between tries, for ``seconds`` in all (default
    ``SIMUDY_DB_RETRY_SECONDS``): a worker rides out a database outage instead of failing."""
    budget = get_config().db_retry_seconds if seconds is None else seconds
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        try:
            return fn()
        except (OperationalError, DBAPIError) as err:
            wait = min(delay * (2 ** attempt), 5.0)
            if not is_unavailable(err) or time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            attempt += 1


def is_unavailable(err: BaseException) -> bool:
    """The database is away (dropped connection, refused, pool exhausted), not the query wrong."""
    if isinstance(err, TimeoutError):  # sqlalchemy's pool timeout
        return True
    if isinstance(err, OperationalError):
        return True
    return isinstance(err, DBAPIError) and bool(getattr(err, "connection_invalidated", False))
