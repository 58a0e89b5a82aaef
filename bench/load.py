"""``simudy bench-load``: how the API holds under load, measured from outside like a client.

Starts ``simudy serve`` on a fresh PostgreSQL database (and Redis for the queue), makes a team,
a key and a job over HTTP, then drives ``wrk`` (C, so the load generator costs little CPU) at
``GET /v1/jobs/{id}`` with N concurrent connections: once alone, once while M uploads stall
after sending their headers and part of their body. Prints and writes requests/s, p50, p99,
non-2xx responses and socket errors of each phase. A benchmark, not a test: it reports numbers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from core.errors import SimudyError

RECIPE = {"architecture": "mlp", "arch_options": {"hidden": [8]}, "num_classes": 2,
          "image_shape": [1, 4, 4], "normalize": {"mean": [0.5], "std": [0.25]}, "epochs": 1,
          "batch_size": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SimudyError(f"the API did not answer at {url} within {timeout:.0f} s")


@contextmanager
def _postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"simudy_load_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as err:
        raise SimudyError(f"cannot reach PostgreSQL at {admin_url}: {err}") from None
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _simudy(env: dict[str, str], *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "simudy", *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SimudyError(f"simudy {' '.join(args)} failed: {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout


def _tiny_checkpoints(directory: Path) -> list[Path]:
    import torch

    from core.architectures import model_for_recipe
    from core.checkpoints import save_safetensors
    from core.recipe import parse_recipe

    torch.manual_seed(0)
    state = model_for_recipe(parse_recipe(RECIPE)).state_dict()
    paths = []
    for i, scale in enumerate((0.0, 0.1)):
        path = directory / f"theta{i}.safetensors"
        save_safetensors({k: v + scale for k, v in state.items()}, path)
        paths.append(path)
    return paths


def _stalled_uploads(url: str, key: str, count: int) -> list[socket.socket]:
    """Open ``count`` uploads that send their headers and 1 KiB of a 1 MiB body, then stall."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)))
        s.sendall(("POST /v1/checkpoints HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {key}\r\n"
                   "Content-Type: multipart/form-data; boundary=b\r\n"
                   "Content-Length: 1048576\r\n\r\n"
                   "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.pt\"\r\n\r\n").encode()
                  + b"\0" * 1024)
        sockets.append(s)
    return sockets


def _wrk(url: str, key: str, connections: int, seconds: int, threads: int) -> dict:
    r = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                        "--timeout", "10s", "-H", f"Authorization: Bearer {key}", url],
                       capture_output=True, text=True)
    return parse_wrk(r.stdout)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def parse_wrk(text: str) -> dict:
    """requests/s, latency percentiles (ms), non-2xx responses, socket errors from wrk's output."""
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    rate, count = re.search(r"Requests/sec:\s+([\d.]+)", text), re.search(r"(\d+) requests in", text)
    out: dict = {"requests_per_second": float(rate.group(1)) if rate else 0.0,
                 "requests": int(count.group(1)) if count else 0}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[f"p{pct}_ms"] = ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    return out


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def run_load(*, postgres_url: str, redis_url: str, connections: int, seconds: int, stalled: int,
             wrk_threads: int, out: Path | None, serve_args: list[str]) -> dict:
    if shutil.which("wrk") is None:
        raise SimudyError("wrk is not installed (apt-get install wrk)")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="simudy-load-")))
        database = stack.enter_context(_postgres_database(postgres_url))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SIMUDY_DATABASE_URL": database, "SIMUDY_BROKER_URL": redis_url,
               "SIMUDY_QUEUE_PREFIX": f"simudy-load-{uuid.uuid4().hex[:8]}:",
               "SIMUDY_STORAGE_URL": f"file://{tmp}/objects"}
        _simudy(env, "migrate")
        _simudy(env, "admin", "create-team", "load")
        key = _simudy(env, "admin", "create-key", "--team", "load").strip().splitlines()[-1]
        log = open(tmp / "serve.log", "wb")
        server = subprocess.Popen([sys.executable, "-m", "simudy", "serve", "--port", str(port), *serve_args],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(_stop, server)
        _wait_http(f"{url}/healthz")
        headers = {"Authorization": f"Bearer {key}"}
        ids = []
        for path in _tiny_checkpoints(tmp):
            with open(path, "rb") as fh:
                r = httpx.post(f"{url}/v1/checkpoints", headers=headers, files={"file": (path.name, fh)})
            r.raise_for_status()
            ids.append(r.json()["id"])
        r = httpx.post(f"{url}/v1/jobs", headers=headers, json={
            "theta0": ids[0], "thetaf": ids[1], "recipe": RECIPE,
            "settings": {"num_images": 2, "iterations": 10}})
        r.raise_for_status()
        target = f"{url}/v1/jobs/{r.json()['id']}"
        _wrk(target, key, connections, 5, wrk_threads)  # warm up: pools filled, caches primed
        phases = {"status_polls": _wrk(target, key, connections, seconds, wrk_threads)}
        sockets = _stalled_uploads(url, key, stalled)
        try:
            phases[f"status_polls_with_{stalled}_stalled_uploads"] = _wrk(target, key, connections, seconds,
                                                                           wrk_threads)
            try:
                alive: int | str = httpx.get(f"{url}/readyz", timeout=10).status_code
            except httpx.HTTPError as err:
                alive = f"no answer: {type(err).__name__}"
        finally:
            for s in sockets:
                s.close()
        result = {"connections": connections, "seconds": seconds, "stalled_uploads": stalled,
                  "wrk_threads": wrk_threads, "serve_args": serve_args, "readyz_during_stall": alive,
                  "phases": phases, "cpu_count": os.cpu_count()}
    for name, p in phases.items():
        print(f"{name}: {p['requests_per_second']:.0f} req/s, p50 {_ms(p['p50_ms'])}, "
              f"p99 {_ms(p['p99_ms'])}, non-2xx {p['non_2xx']}, socket errors {p['socket_errors']}")
    print(f"/readyz while uploads stall: {result['readyz_during_stall']}")
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(out)
    return result
