"""``GET /v1/catalog``: the methods, architectures and metrics this service offers."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import Response

from api.schemas import Catalog
from core.architectures import ARCHITECTURES
from core.catalog import catalog
from core.methods import METHODS

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


@lru_cache(maxsize=4)
def _catalog_json(methods: tuple[str, ...], architectures: tuple[str, ...]) -> bytes:
    """Built once per set of registered entries (building it writes every method's settings
    schema: about 10 ms, which a dashboard's page loads would otherwise pay each time)."""
    return Catalog.model_validate(catalog()).model_dump_json().encode()


@router.get("", response_model=Catalog)
async def read_catalog() -> Response:
    """Registry entries with a one-line description each; no key needed (it names code, not data)."""
    body = _catalog_json(tuple(METHODS.names()), tuple(ARCHITECTURES.names()))
    return Response(body, media_type="application/json")
