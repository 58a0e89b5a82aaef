"""Clients of a running simudy service: the HTTP client (``http``), ``simudy submit`` and
``simudy demo``. Nothing here touches the database or the queue: only the HTTP API."""
