"""Storage and database hiccups are retried: a dropped Postgres connection and an S3 server that
is not up yet (both real, nothing mocked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import text

from service.db.session import session_scope, with_db_retry
from service.storage.base import retrying
from service.storage.s3 import S3Store
from tests.service.conftest import free_port, unavailable, wait_for


def test_dropped_database_connection_is_retried(service_env):
    calls = []

    def read() -> int:
        calls.append(1)
        with session_scope() as s:
            if len(calls) == 1:  # the server drops our connection in the middle of the work
                s.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            return s.execute(text("SELECT 41 + 1")).scalar()

    assert with_db_retry(read, delay=0.1) == 42
    assert len(calls) == 2


def test_storage_that_comes_up_late_is_retried(tmp_path):
    import boto3
    import botocore.exceptions

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not os.path.exists(binary):
        unavailable("moto_server is not installed (pip install 'moto[server]')")
    procs, threads, errors = [], [], []

    def bucket_made() -> bool:
        try:
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="late")
        except botocore.exceptions.EndpointConnectionError:  # still starting up
            return False
        return True

    def start_late() -> None:  # the S3 server appears only after the first attempts failed
        try:
            procs.append(subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(bucket_made, 30, "moto_server and the bucket")
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            errors.append(err)

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    store = S3Store(bucket="late", endpoint_url=endpoint)
    attempts = []

    def put() -> None:
        attempts.append(1)
        if len(attempts) == 2:  # the first attempt (with botocore's own retries) has failed
            threads.append(threading.Thread(target=start_late, daemon=True))
            threads[-1].start()
        store.put_bytes("teams/t/x.bin", b"payload")

    try:
        retrying(put, attempts=8, delay=0.5)
        assert len(attempts) >= 2
        assert store.get_bytes("teams/t/x.bin") == b"payload"
    finally:
        for t in threads:
            t.join(timeout=60)
        for p in procs:
            p.terminate()
            p.wait(timeout=20)
    assert not errors, errors
