"""Alembic migrations: the only way the service's schema is made."""
