"""The simudy job service: HTTP API, persistence, object storage and service commands.

HTTP only: requests are validated and authorised here, then handed to ``core`` (the engine) or
queued for ``worker``.
"""
