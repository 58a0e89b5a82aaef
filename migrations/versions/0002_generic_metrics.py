"""generic metric points, checkpoint manifests, jobs without theta0

Loss points hold each method's own metrics as one JSON object per iteration instead of fixed
loss/cosine/tv columns; checkpoints record their key/shape/dtype manifest (read at upload
without tensor data); a job may have no theta0 (methods that reconstruct from thetaf alone).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

METRICS = ("loss", "cosine", "tv")


def upgrade() -> None:
    with op.batch_alter_table("loss_points") as batch:
        batch.add_column(sa.Column("values", sa.JSON(), nullable=True))
    points = sa.table("loss_points", sa.column("id", sa.Integer), sa.column("values", sa.JSON),
                      *(sa.column(m, sa.Float) for m in METRICS))
    conn = op.get_bind()
    rows = conn.execute(sa.select(points.c.id, *(points.c[m] for m in METRICS))).all()
    for row in rows:
        values = {m: getattr(row, m) for m in METRICS}
        conn.execute(points.update().where(points.c.id == row.id).values(values=values))
    with op.batch_alter_table("loss_points") as batch:
        batch.alter_column("values", existing_type=sa.JSON(), nullable=False)
        for m in METRICS:
            batch.drop_column(m)
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("manifest", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("theta0_id", existing_type=sa.String(length=32), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("theta0_id", existing_type=sa.String(length=32), nullable=False)
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("manifest")
    with op.batch_alter_table("loss_points") as batch:
        for m in METRICS:
            batch.add_column(sa.Column(m, sa.Float(), nullable=True))
    points = sa.table("loss_points", sa.column("id", sa.Integer), sa.column("values", sa.JSON),
                      *(sa.column(m, sa.Float) for m in METRICS))
    conn = op.get_bind()
    for row in conn.execute(sa.select(points.c.id, points.c["values"])).all():
        values = row[1] or {}
        conn.execute(points.update().where(points.c.id == row.id)
                     .values(**{m: values.get(m) for m in METRICS}))
    with op.batch_alter_table("loss_points") as batch:
        batch.drop_column("values")
