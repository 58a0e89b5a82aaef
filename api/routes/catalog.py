"""``GET /v1/catalog``: the methods, architectures and metrics this service offers."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import ConfigDep
from api.schemas import Catalog
from core.architectures import ARCHITECTURES
from core.catalog import catalog
from core.methods import METHODS
from service.limits import published_maxima, publish_limits

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


@lru_cache(maxsize=4)
def _catalog_json(methods: tuple[str, ...], architectures: tuple[str, ...],
                  maxima: tuple[tuple[str, int], ...]) -> bytes:
    """Built once per set of registered entries and configuration (building it writes every
    method's settings schema: about 10 ms, which a dashboard's page loads would otherwise pay
    each time). The settings schemas state this deployment's limits, not the engine's."""
    body = catalog()
    for entry in body["methods"]:
        publish_limits(entry["settings_schema"], maxima)
    return Catalog.model_validate(body).model_dump_json().encode()


@router.get("", response_model=Catalog)
async def read_catalog(config: ConfigDep) -> Response:
    """Registry entries with a one-line description each; no key needed (it names code, not data)."""
    body = _catalog_json(tuple(METHODS.names()), tuple(ARCHITECTURES.names()),
                        published_maxima(config))
    return Response(body, media_type="application/json")
