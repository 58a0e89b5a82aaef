"""Alembic makes the schema, on Postgres and SQLite, and matches the models."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from api.db.migrate import check, upgrade
from api.db.models import Base


def test_migrations_upgrade_an_empty_postgres_and_check_is_clean(postgres):
    url = postgres().replace("postgresql://", "postgresql+psycopg://")
    upgrade(url)
    check(url)  # raises if the models and migrations differ
    engine = create_engine(url)
    try:
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_work_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/m.sqlite"
    upgrade(url)
    check(url)
    engine = create_engine(url)
    try:
        assert "jobs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
