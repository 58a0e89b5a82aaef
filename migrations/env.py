"""Alembic environment: the URL comes from ``SIMUDY_DATABASE_URL`` unless the caller set
``sqlalchemy.url``; SQLite uses batch mode so that ALTERs work there too."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from api.db.models import Base
from api.db.session import make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from api.settings import get_settings

    return get_settings().database_url


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
        context.configure(connection=connection, **_options(url))
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
