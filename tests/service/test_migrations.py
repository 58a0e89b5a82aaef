"""Alembic makes the schema, on Postgres and SQLite, and matches the models."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from service.db.migrate import check, upgrade
from service.db.models import Base


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


def test_0002_moves_loss_points_into_generic_metric_values(tmp_path):
    """Points written with fixed loss/cosine/tv columns keep their values as one metrics object."""
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/old.sqlite"
    upgrade(url, "0001")
    engine = create_engine(url)
    now = "2026-01-01 00:00:00"
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO teams (id, name, created_at) VALUES ('t', 'team', :n)"), {"n": now})
            conn.execute(text(
                "INSERT INTO checkpoints (id, team_id, sha256, size_bytes, format, num_tensors, "
                "num_parameters, storage_key, created_at) VALUES ('c', 't', 'h', 1, 'safetensors', 1, 1, "
                "'k', :n)"), {"n": now})
            conn.execute(text(
                "INSERT INTO jobs (id, team_id, status, phase, theta0_id, thetaf_id, recipe, settings, "
                "iteration, iterations, created_at, attempts, cancel_requested) VALUES ('j', 't', "
                "'succeeded', 'run', 'c', 'c', '{}', '{}', 2, 2, :n, 1, 0)"), {"n": now})
            conn.execute(text("INSERT INTO loss_points (job_id, iteration, loss, cosine, tv) "
                              "VALUES ('j', 2, 0.5, 0.25, 3.0)"))
        upgrade(url)
        check(url)
        with engine.connect() as conn:
            values = conn.execute(text("SELECT \"values\" FROM loss_points")).scalar_one()
        import json

        assert json.loads(values) == {"loss": 0.5, "cosine": 0.25, "tv": 3.0}
    finally:
        engine.dispose()
