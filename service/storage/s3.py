"""An S3 bucket (AWS, MinIO, moto...) as object store. Credentials come from the standard AWS
variables; the endpoint from ``SIMUDY_S3_ENDPOINT_URL``."""

from __future__ import annotations

from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.storage.base import ObjectNotFound, ObjectStore, StorageError, validate_key


class S3Store(ObjectStore):
    def __init__(self, *, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 region: str = "us-east-1") -> None:
        self.bucket = bucket
        self.prefix = (validate_key(prefix) + "/") if prefix else ""
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"},
                          connect_timeout=5, read_timeout=60))

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _call(self, what: str, key: str, fn):  # noqa: ANN001, ANN202
        try:
            return fn()
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFound(key) from None
            raise StorageError(f"s3 {what} {key}: {code or err}") from err
        except BotoCoreError as err:
            raise StorageError(f"s3 {what} {key}: {err}") from err

    def put_file(self, key: str, path: Path) -> None:
        self._call("upload", key, lambda: self.client.upload_file(str(path), self.bucket, self._key(key)))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("put", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def get_bytes(self, key: str) -> bytes:
        return self._call("get", key, lambda: self.client.get_object(
            Bucket=self.bucket, Key=self._key(key))["Body"].read())

    def get_file(self, key: str, path: Path) -> None:
        self._call("download", key, lambda: self.client.download_file(self.bucket, self._key(key), str(path)))

    def exists(self, key: str) -> bool:
        try:
            self._call("head", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
            return True
        except ObjectNotFound:
            return False

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list_keys(prefix)
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[i:i + 1000]]
            self._call("delete", prefix, lambda: self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}))

    def list_keys(self, prefix: str = "") -> list[str]:
        full = self.prefix + prefix
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(o["Key"][len(self.prefix):] for o in page.get("Contents", []))

        self._call("list", prefix or "/", collect)
        return sorted(keys)

    def check(self) -> None:
        try:
            self._call("head bucket", self.bucket, lambda: self.client.head_bucket(Bucket=self.bucket))
        except ObjectNotFound:
            raise StorageError(f"s3 bucket {self.bucket} does not exist") from None
