"""``GET /v1/catalog``: the methods, architectures and metrics this service offers."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import Catalog
from core.catalog import catalog

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


@router.get("", response_model=Catalog)
def read_catalog() -> dict:
    """Registry entries with a one-line description each; no key needed (it names code, not data)."""
    return catalog()
