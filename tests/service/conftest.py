"""Real services for the service tests: the machine's PostgreSQL and Redis (or throwaway ones
started here when their binaries exist), an S3 server (moto) over HTTP, and Celery workers as
subprocesses. A fresh database, Redis db number and key prefix per session. Where a service
cannot be had the tests skip, or fail when ``SIMUDY_REQUIRE_SERVICES=1`` (CI)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("SIMUDY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SIMUDY_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE = os.environ.get("SIMUDY_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (SIMUDY_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# -- PostgreSQL ------------------------------------------------------------------------------
def _pg_admin_url(tmp_root: Path) -> tuple[str, subprocess.Popen | None]:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
        return PG_URL, None
    except psycopg.OperationalError:
        pass
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin")) + [os.path.dirname(shutil.which("initdb") or "")]
    bindir = next((b for b in bins if b and os.path.exists(os.path.join(b, "initdb"))), None)
    if bindir is None:
        unavailable(f"no PostgreSQL at {PG_URL} and no initdb to start one")
    data, port = tmp_root / "pg", free_port()
    subprocess.run([f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    proc = subprocess.Popen([f"{bindir}/postgres", "-D", str(data), "-p", str(port), "-k", str(tmp_root),
                             "-h", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _port_open("127.0.0.1", port), 30, "throwaway postgres")
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", proc


@pytest.fixture(scope="session")
def tmp_root():  # noqa: ANN201
    path = Path(tempfile.mkdtemp(prefix="simudy-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(tmp_root):  # noqa: ANN001, ANN201
    """(admin URL, make_database(), ...) on a reachable or throwaway server."""
    import psycopg

    admin_url, proc = _pg_admin_url(tmp_root)
    made: list[str] = []

    def make_database() -> str:
        name = f"simudy_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        u = urlparse(admin_url)
        return u._replace(path=f"/{name}").geturl()

    yield make_database
    from service.db.session import engine_for

    for engine in list(_engines_seen()):
        engine.dispose()
    engine_for.cache_clear()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if proc:
        proc.terminate()
        proc.wait(timeout=30)


def _engines_seen():  # noqa: ANN202

    # lru_cache keeps the engines it made; dispose them before dropping databases
    from service.db.session import get_engine

    return [get_engine()] if os.environ.get("SIMUDY_DATABASE_URL") else []


# -- Redis -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url(tmp_root):  # noqa: ANN001, ANN201
    import redis

    proc = None
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
        base = REDIS_URL.rstrip("/")
    except redis.exceptions.ConnectionError:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable(f"no Redis at {REDIS_URL} and no redis-server to start one")
        port = free_port()
        proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                                 "--dir", str(tmp_root)], stdout=subprocess.DEVNULL)
        wait_for(lambda: _port_open("127.0.0.1", port), 20, "throwaway redis")
        base = f"redis://127.0.0.1:{port}"
    u = urlparse(base)
    db = 1 + uuid.uuid4().int % 15
    url = u._replace(path=f"/{db}").geturl()
    prefix = f"simudy-test-{uuid.uuid4().hex[:8]}:"
    yield url, prefix
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    if proc:
        proc.terminate()
        proc.wait(timeout=20)


# -- S3 (moto server) ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint():  # noqa: ANN201
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not os.path.exists(binary):
        unavailable("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _port_open("127.0.0.1", port), 30, "moto_server")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


# -- the configured service ------------------------------------------------------------------
TEST_ENV = {
    "SIMUDY_HEARTBEAT_SECONDS": "0.5",
    "SIMUDY_HEARTBEAT_TIMEOUT_SECONDS": "4",
    "SIMUDY_SWEEP_INTERVAL_SECONDS": "1",
    "SIMUDY_STATE_SAVE_SECONDS": "1",
    "SIMUDY_PROGRESS_FLUSH_SECONDS": "0.2",
    "SIMUDY_CANCEL_CHECK_SECONDS": "0.2",
    "SIMUDY_DEVICE": "cpu",
    "SIMUDY_MAX_UPLOAD_BYTES": "200000",
    "SIMUDY_MAX_IMAGES": "64",
    "SIMUDY_MAX_ITERATIONS": "5000",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "OMP_NUM_THREADS": "1",
    "SIMUDY_METHOD_MODULES": "tests.plugins.trivial_method",  # a second method, as a plugin
}


def _clear_caches() -> None:
    from service.config import get_config
    from service.db.session import engine_for
    from service.queue import producer
    from service.storage import _store_for

    get_config.cache_clear()
    engine_for.cache_clear()
    _store_for.cache_clear()
    producer.cache_clear()


@pytest.fixture(scope="session")
def service_env(postgres, redis_url, s3_endpoint):  # noqa: ANN001, ANN201
    """Environment of the API under test and of its workers; the schema is migrated."""
    import boto3

    bucket = f"simudy-test-{uuid.uuid4().hex[:8]}"
    env = dict(TEST_ENV)
    env.update({
        "SIMUDY_DATABASE_URL": postgres(),
        "SIMUDY_BROKER_URL": redis_url[0],
        "SIMUDY_QUEUE_PREFIX": redis_url[1],
        "SIMUDY_STORAGE_URL": f"s3://{bucket}/objects",
        "SIMUDY_S3_ENDPOINT_URL": s3_endpoint,
    })
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _clear_caches()
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    from service.db.migrate import upgrade

    upgrade(env["SIMUDY_DATABASE_URL"])
    yield {**env, "bucket": bucket}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def app_client(service_env):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture(scope="session")
def teams(service_env):  # noqa: ANN001, ANN201
    """Two teams with one key each: {"a": headers, "b": headers, "a_key": key, ...}."""
    from service.crud.teams import create_key, create_team
    from service.db.session import session_scope

    out = {}
    with session_scope() as s:
        for name in ("a", "b"):
            team = create_team(s, name=f"team-{name}-{uuid.uuid4().hex[:6]}")
            _, key = create_key(s, team=team)
            out[name] = {"Authorization": f"Bearer {key}"}
            out[f"{name}_key"] = key
            out[f"{name}_team"] = team.id
    return out


class Workers:
    """Celery workers as subprocesses (own process groups, so a whole worker can be killed)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.procs = env, log_dir, []

    def start(self, name: str, **env: str) -> subprocess.Popen:
        """Start a worker; ``env`` overrides settings for this worker only."""
        log = self.log_dir / f"worker-{name}.log"
        fh = open(log, "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "simudy", "worker", "--hostname", f"{name}@test",
             "--loglevel", "INFO"],
            cwd=ROOT, env={**os.environ, **{k: v for k, v in self.env.items() if k != "bucket"}, **env},
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        wait_for(lambda: b"ready." in log.read_bytes() or proc.poll() is not None, 60,
                 f"worker {name} to start")
        assert proc.poll() is None, log.read_text()[-3000:]
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        """Warm shutdown (SIGTERM to the whole group), SIGKILL after 15 s."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def kill(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)


@pytest.fixture(scope="module")
def workers(service_env, tmp_root):  # noqa: ANN001, ANN201
    w = Workers(service_env, tmp_root)
    yield w
    w.stop_all()


class LiveServer:
    """``simudy serve`` in a subprocess with the service test environment (plus overrides)."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str, **overrides: str) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"server-{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simudy", "serve", "--port", str(self.port)], cwd=ROOT,
            env={**os.environ, **{k: v for k, v in env.items() if k != "bucket"}, **overrides},
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, f"simudy serve ({name})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
