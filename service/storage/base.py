"""The storage interface and key rules. Keys are built by the service from ids
(``teams/<team>/jobs/<job>/grid.png``); ``validate_key`` refuses anything else so that no user
input can reach a path."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class StorageError(Exception):
    """The store could not be reached or refused an operation (transient: retried)."""


class ObjectNotFound(KeyError):
    """No object under that key."""


def validate_key(key: str) -> str:
    if not _KEY.match(key) or len(key) > 512 or any(p in (".", "..") for p in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def checkpoint_key(team_id: str, checkpoint_id: str) -> str:
    return validate_key(f"teams/{team_id}/checkpoints/{checkpoint_id}")


def job_prefix(team_id: str, job_id: str) -> str:
    return validate_key(f"teams/{team_id}/jobs/{job_id}") + "/"


def job_key(team_id: str, job_id: str, name: str) -> str:
    return validate_key(job_prefix(team_id, job_id) + name)


def retrying(fn: Callable[[], T], *, attempts: int = 4, delay: float = 0.5) -> T:
    """Call ``fn`` again after a ``StorageError`` (a hiccup), with backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except StorageError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay * (2 ** attempt))
    raise AssertionError("unreachable")


class ObjectStore(ABC):
    @abstractmethod
    def put_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    @abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]: ...

    @abstractmethod
    def check(self) -> None:
        """Raise ``StorageError`` if the store cannot be used (readiness)."""


def load_stored_checkpoints(store: "ObjectStore", checkpoints: dict[str, str]) -> dict[str, dict]:
    """Fetch checkpoints (``{name: storage key}``) into a temporary folder and load them with
    the engine's safe loader, which names a bad tensor by ``name`` (the files never stay on
    local disk)."""
    import tempfile

    from core.checkpoints import load_checkpoint

    states = {}
    with tempfile.TemporaryDirectory(prefix="simudy-ckpt-") as tmp:
        for name, key in checkpoints.items():
            path = Path(tmp) / name
            retrying(lambda: store.get_file(key, path))
            states[name] = load_checkpoint(path)
            path.unlink()
    return states
