"""The OpenAPI document (``/openapi.json``, and the ``/docs`` page drawn from it), generated
once per app: FastAPI's, with two corrections so it describes this server as it answers.

- Errors: every operation lists the statuses it can answer with the ``Message`` schema
  (``{"detail": "one readable line"}``, api/errors.py); FastAPI's default 422 schema describes a
  list this server never sends.
- Limits: the job settings state this deployment's maxima (``num_images``, ``iterations``), as
  ``/v1/catalog`` does; the models' own maxima are the engine's, far above what it accepts.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.limits import publish_limits

ERRORS = {
    "400": "malformed request (e.g. an invalid cursor or multipart body)",
    "401": "missing, invalid or revoked API key",
    "408": "the upload stalled",
    "413": "the body is larger than the service accepts",
    "415": "wrong content type",
    "422": "invalid input, named in the message",
    "429": "too many failed authentications from this address",
    "503": "the database or object storage is unavailable; try again",
}

MESSAGE = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}}


def install_openapi(app: FastAPI, *, maxima: tuple[tuple[str, int], ...]) -> None:
    """Replace FastAPI's OpenAPI generation with one that documents errors and ``maxima``."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description,
                           routes=app.routes)
        _document_errors(spec)
        for schema in spec["components"]["schemas"]["JobCreate"]["properties"]["settings"]["oneOf"]:
            publish_limits(schema, maxima)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(spec: dict[str, Any]) -> None:
    for path, item in spec.get("paths", {}).items():
        for op in item.values():
            responses = op.setdefault("responses", {})
            public = path in ("/healthz", "/readyz") or path.startswith("/v1/catalog")
            wanted = ["422"] + ([] if public else ["401", "429", "503"])
            if op.get("requestBody"):
                wanted += ["400", "413"]
            for code in wanted + [c for c in responses if c in ERRORS]:
                responses[code] = {"description": responses.get(code, {}).get("description")
                                   or ERRORS[code], **MESSAGE}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.setdefault("Message", {"title": "Message", "type": "object", "required": ["detail"],
                                   "properties": {"detail": {"type": "string", "title": "Detail"}}})
