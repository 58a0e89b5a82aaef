"""The service layer: what the HTTP API (``api/``) and the Celery workers (``worker/``) share.

Configuration (``config``), the database (``db``: models, sessions, migrations), keyword-only
CRUD (``crud``), object storage (``storage``), the task queue producer (``queue``), the job
lifecycle with every status transition (``lifecycle``), the stale-work sweep (``sweep``), the
limits a job must respect (``limits``) and loading a job's inputs (``inputs``). It imports the
engine (``core``) and never ``api`` or ``worker``."""
