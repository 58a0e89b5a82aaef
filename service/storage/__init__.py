"""Object storage behind one interface (``ObjectStore``): a local directory or an S3 bucket."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlparse

from service.config import ServiceConfig, get_config
from service.storage.base import ObjectNotFound, ObjectStore, StorageError, validate_key


def open_store(config: ServiceConfig) -> ObjectStore:
    url = urlparse(config.storage_url)
    if url.scheme == "file":
        from service.storage.local import LocalStore

        return LocalStore(url.path)
    from service.storage.s3 import S3Store

    return S3Store(bucket=url.netloc, prefix=url.path.strip("/"),
                   endpoint_url=config.s3_endpoint_url, region=config.s3_region)


@lru_cache(maxsize=4)
def _store_for(config_json: str) -> ObjectStore:
    return open_store(ServiceConfig.model_validate_json(config_json))


def get_store() -> ObjectStore:
    """The process's store for its configuration."""
    return _store_for(get_config().model_dump_json())


__all__ = ["ObjectStore", "ObjectNotFound", "StorageError", "get_store", "open_store", "validate_key"]
