"""Persistence: SQLAlchemy 2 models and sessions. The schema is made by Alembic only."""
