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

from api.settings import get_settings

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
    if not kwargs:
        kwargs = {"pool_size": 5, "max_overflow": 5}
    return create_engine(url, pool_pre_ping=True, **kwargs)


@lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    return make_engine(url)


def get_engine() -> Engine:
    return engine_for(get_settings().database_url)


def session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


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


def with_db_retry(fn: Callable[[], T], *, attempts: int = 5, delay: float = 0.5) -> T:
    """Run ``fn`` (which opens its own session) again after a dropped connection or lock."""
    for attempt in range(attempts):
        try:
            return fn()
        except (OperationalError, DBAPIError) as err:
            if attempt == attempts - 1 or not _transient(err):
                raise
            time.sleep(delay * (2 ** attempt))
    raise AssertionError("unreachable")


def _transient(err: DBAPIError) -> bool:
    return isinstance(err, OperationalError) or bool(getattr(err, "connection_invalidated", False))
