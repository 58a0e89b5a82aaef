"""Alembic environment: the URL comes from ``SIMUDY_DATABASE_URL`` unless the caller set
``sqlalchemy.url``; SQLite uses batch mode so that ALTERs work there too."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from service.db.models import Base
from service.db.session import make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from service.config import get_config

    return get_config().database_url


def _options(url: str) -> dict:
    return {"target_metadata": target_metadata, "render_as_batch": url.startswith("sqlite"),
            "compare_type": True}


def run_offline() -> None:
    url = _url()
    context.configure(url=url, literal_binds=True, **_options(url))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = _url()
    engine = make_engine(url, poolclass=pool.NullPool)  # one-off connection
    with engine.connect() as connection:
        if url.startswith("sqlite"):
            # Batch mode rebuilds a table by copy, drop and rename; with foreign keys enforced the
            # drop would cascade into the rows that reference it (a job's points, say). SQLite only
            # takes this outside a transaction.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(connection=connection, **_options(url))
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
