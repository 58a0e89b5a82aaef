"""Object storage behind one interface (``ObjectStore``): a local directory or an S3 bucket."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlparse

from api.settings import Settings, get_settings
from api.storage.base import ObjectNotFound, ObjectStore, StorageError, validate_key


def open_store(settings: Settings) -> ObjectStore:
    url = urlparse(settings.storage_url)
    if url.scheme == "file":
        from api.storage.local import LocalStore

        return LocalStore(url.path)
    from api.storage.s3 import S3Store

    return S3Store(bucket=url.netloc, prefix=url.path.strip("/"),
                   endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)


@lru_cache(maxsize=4)
def _store_for(settings_json: str) -> ObjectStore:
    return open_store(Settings.model_validate_json(settings_json))


def get_store() -> ObjectStore:
    """The process's store for its settings."""
    return _store_for(get_settings().model_dump_json())


__all__ = ["ObjectStore", "ObjectNotFound", "StorageError", "get_store", "open_store", "validate_key"]
