"""Celery workers: claim a job, load its inputs, call the engine, report, store results."""
