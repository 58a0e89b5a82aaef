"""A directory as object store (the embedded default). Writes go to a temporary file first and
are renamed into place, so a reader never sees half an object."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from service.storage.base import ObjectNotFound, ObjectStore, StorageError, validate_key


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if self.root not in path.parents:
            raise ValueError(f"invalid storage key {key!r}")
        return path

    def _atomic_write(self, key: str, write) -> None:  # noqa: ANN001
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    write(fh)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:
            raise StorageError(f"cannot write {key}: {err.strerror}") from err

    def put_file(self, key: str, path: Path) -> None:
        def write(fh):  # noqa: ANN001, ANN202
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)

        self._atomic_write(key, write)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda fh: fh.write(data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as err:
            raise StorageError(f"cannot read {key}: {err.strerror}") from err

    def get_file(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as err:
            raise StorageError(f"cannot read {key}: {err.strerror}") from err

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        directory = self._path(prefix.rstrip("/"))
        if directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)

    def list_keys(self, prefix: str = "") -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith(".tmp-"))

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".tmp-ready-")
            probe.close()
        except OSError as err:
            raise StorageError(f"storage directory {self.root} is not writable: {err.strerror}") from err
