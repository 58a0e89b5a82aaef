"""What a hostile tester found, each as a test against the real parts: odd bytes in ids and
cursors, non-finite numbers, unchecked options, bombs disguised as small uploads, bodies too
large to parse, stalled uploads, guessing keys, a database that goes away. Every answer is a
readable 4xx (or 503 while the database is away), never a 500, and small inputs cost little."""

from __future__ import annotations

import base64
import io
import json
import resource
import socket
import time
import zipfile

import numpy as np
import pytest
import torch

from tests.service.conftest import LiveServer, wait_for
from tests.service.helpers import RECIPE, final, settings, submit, upload, upload_pair, wait_job

MB = 2**20


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _no_5xx(r) -> None:  # noqa: ANN001
    assert r.status_code < 500, (r.status_code, r.text)
    assert isinstance(r.json()["detail"], str), r.text


def test_nul_bytes_and_odd_ids_are_not_found(app_client, teams):
    a = teams["a"]
    for method, path in [("get", "/v1/jobs/%00"), ("get", "/v1/jobs/%00/grid.png"),
                         ("get", "/v1/jobs/%00/loss"), ("post", "/v1/jobs/%00/cancel"),
                         ("delete", "/v1/jobs/%00"), ("get", "/v1/checkpoints/%00"),
                         ("delete", "/v1/checkpoints/%00"), ("get", "/v1/jobs/" + "a" * 5000),
                         ("get", "/v1/jobs/%C0%AF")]:
        r = getattr(app_client, method)(path, headers=a)
        assert r.status_code == 404, (path, r.status_code, r.text)
    for params in ({"cursor": "\x00"}, {"cursor": "AAAA"}, {"cursor": "x" * 150}):
        r = app_client.get("/v1/jobs", headers=a, params=params)
        assert r.status_code == 400, (params, r.text)
    r = app_client.get("/v1/audit", headers=a, params={"action": "up\x00load"})
    assert r.status_code == 422
    for cursor in ("99999999999999999999", "0", "-1", "٣"):
        assert app_client.get("/v1/audit", headers=a, params={"cursor": cursor}).status_code == 400


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_cursor_edge_cases_are_400(app_client, teams):
    a = teams["a"]
    for raw in ("|", "x|y", "2026-01-01T00:00:00|" + "a" * 32,  # no time zone
                "2026-01-01T00:00:00+00:00|" + "\x00" * 32, "2026-01-01T00:00:00+00:00|" + "A" * 32,
                "9999-12-31T23:59:59+14:00|" + "z" * 32):
        for path in ("/v1/jobs", "/v1/checkpoints"):
            r = app_client.get(path, headers=a, params={"cursor": _cursor(raw)})
            assert r.status_code == 400, (path, raw, r.text)
    for path in ("/v1/jobs?cursor=%ff%fe", "/v1/checkpoints?cursor=%ff", "/v1/audit?cursor=%ff"):
        assert app_client.get(path, headers=a).status_code == 400, path


def _post_raw(app_client, headers: dict, body: str):  # noqa: ANN001, ANN202
    return app_client.post("/v1/jobs", headers={**headers, "Content-Type": "application/json"},
                           content=body.encode())


def test_non_finite_numbers_and_odd_options_are_422(app_client, teams):
    a = teams["a"]
    theta0, thetaf = upload_pair(app_client, a)
    base = {"theta0": theta0, "thetaf": thetaf, "recipe": RECIPE, "settings": settings()}
    dumped = json.dumps(base)
    for body in (dumped.replace('"image_lr": 0.05', '"image_lr": NaN'),
                 dumped.replace('"lr": 0.1', '"lr": Infinity'),
                 json.dumps(base).replace('"hidden": [32]', '"hidden": [32], "x": NaN')):
        r = _post_raw(app_client, a, body)
        assert r.status_code == 422, (body[:80], r.text)
    odd_options = [{"hidden": ["a"]}, {"hidden": [-5]}, {"hidden": [1e30]}, {"hidden": [10**12]},
                   {"hidden": [32], "bias": "sometimes"}, {"hidden": 32}, {"hidden": [[[[[[[[32]]]]]]]]},
                   {"hidden": list(range(1, 2000))}, {"hidden": [32], "deep": {"a": "\x00"}}]
    for options in odd_options:
        r = app_client.post("/v1/jobs", headers=a, json={**base, "recipe": {**RECIPE, "arch_options": options}})
        assert r.status_code == 422, (options, r.text)
    for arch in ("torchvision/vit_h_14", "torchvision/nope", "resnet18\x00"):
        r = app_client.post("/v1/jobs", headers=a, json={**base, "recipe": {**RECIPE, "architecture": arch,
                                                                            "arch_options": {}}})
        assert r.status_code == 422, (arch, r.text)
    r = app_client.post("/v1/jobs", headers=a, json={**base, "name": "evil\x00name"})
    assert r.status_code == 422


def test_settings_the_worker_would_have_choked_on_are_refused_at_submit(app_client, teams):
    a = teams["a"]
    theta0, thetaf = upload_pair(app_client, a)
    for extra, needle in [({"seed": 10**30}, "seed"), ({"adam_betas": [2, -1]}, "adam_betas"),
                          ({"lr_search": {"candidates": [-0.1, 0.01]}}, "candidates"),
                          ({"precision": "fp16"}, "precision"), ({"cosine_t_max": 0}, "cosine_t_max"),
                          ({"clipping": {"threshold": -1}}, "threshold"), ({"device": "cuda"}, "device"),
                          ({"progress_every": 0}, "progress_every"), ({"method": "nope"}, "unknown method")]:
        r = app_client.post("/v1/jobs", headers=a, json={"theta0": theta0, "thetaf": thetaf, "recipe": RECIPE,
                                                         "settings": {**settings(), **extra}})
        assert r.status_code == 422 and needle in r.json()["detail"], (extra, r.text)


def test_a_json_body_over_the_limit_is_refused_before_it_is_parsed(app_client, teams):
    body = b'{"name": "' + b"x" * (2 * MB) + b'"}'
    t0 = time.process_time()
    r = app_client.post("/v1/jobs", headers={**teams["a"], "Content-Type": "application/json"}, content=body)
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]

    def chunks():  # no declared length: counted as it arrives
        for _ in range(4):
            yield b" " * MB
    r = app_client.post("/v1/jobs", headers={**teams["a"], "Content-Type": "application/json"}, content=chunks())
    assert r.status_code == 413
    assert time.process_time() - t0 < 2


def _stride0_pt() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1).expand(2**15, 2**15)}, buf)  # 4 GiB if expanded
    return buf.getvalue()


def _compressed_pt() -> bytes:
    src, dst = io.BytesIO(), io.BytesIO()
    torch.save({"w": torch.zeros(2**16)}, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    return dst.getvalue()


def test_checkpoint_bombs_are_refused_cheaply_and_name_the_client_file(app_client, teams):
    a = teams["a"]
    rss, cpu = _rss_mb(), time.process_time()
    cases = [(_stride0_pt(), "view.pt", "broadcast"), (_compressed_pt(), "zipped.pt", "compressed"),
             (b"\x80\x04K\x01.", "bare.pt", "refused"),
             (b"not a checkpoint at all", "junk.safetensors", "not a checkpoint")]
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4, dtype=torch.float8_e4m3fn)}, buf)
    cases.append((buf.getvalue(), "f8.pt", "float8"))
    for data, name, needle in cases:
        r = upload(app_client, a, data, name=name)
        assert r.status_code == 422, (name, r.text)
        detail = r.json()["detail"]
        assert needle in detail and name in detail and "simudy-upload" not in detail, detail
    assert _rss_mb() - rss < 256 and time.process_time() - cpu < 2
    r = upload(app_client, a, b"junk" * 10, name="../../etc/pass\x00wd")
    assert r.status_code == 422 and "\x00" not in r.json()["detail"] and "../" not in r.json()["detail"]


def test_failed_authentication_is_throttled_per_address(service_env, teams):
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(sweep=False), client=("198.51.100.7", 4000)) as guesser, \
            TestClient(create_app(sweep=False), client=("198.51.100.8", 4000)) as owner:
        codes = [guesser.get("/v1/jobs", headers={"Authorization": f"Bearer sdk_{i:012d}_guess"}).status_code
                 for i in range(40)]
        assert codes[:30] == [401] * 30 and set(codes[30:]) == {429}
        r = guesser.get("/v1/jobs", headers=teams["a"])
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert owner.get("/v1/jobs", headers=teams["a"]).status_code == 200  # another address


def test_openapi_documents_the_errors_the_server_sends(app_client):
    spec = app_client.get("/openapi.json").json()
    message = {"$ref": "#/components/schemas/Message"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert op["responses"]["422"]["content"]["application/json"]["schema"] == message, (path, method)
            if path.startswith("/v1/") and not path.startswith("/v1/catalog"):
                for code in ("401", "429", "503"):
                    assert op["responses"][code]["content"]["application/json"]["schema"] == message
            if op.get("requestBody"):
                assert "413" in op["responses"], (path, method)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.fixture(scope="module")
def scored_job(app_client, teams, workers):  # noqa: ANN001, ANN201
    worker = workers.start("hostile")
    job = submit(app_client, teams["a"], iterations=5)
    job = wait_job(app_client, teams["a"], job["id"], final, timeout=90)
    assert job["status"] == "succeeded", job
    workers.stop(worker)
    return job


def _npz(**arrays) -> bytes:  # noqa: ANN003
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def test_truth_bombs_are_refused_before_they_are_unpacked(app_client, teams, scored_job):
    a = teams["a"]
    url = f"/v1/jobs/{scored_job['id']}/truth"
    bare = io.BytesIO()
    np.save(bare, np.zeros((4, 8, 8, 3), np.uint8))
    giant_header = bytearray(_npz(x=np.zeros((4, 8, 8, 3), np.uint8), y=np.zeros(4, np.int64)))
    blank = _npz(x=np.zeros((100_000, 8, 8, 3), np.uint8), y=np.zeros(100_000, np.int64))
    assert len(blank) < 300_000  # 0.2 MB that would unpack to 19 MB and 77 million pixel pairs
    header = io.BytesIO()
    with zipfile.ZipFile(header, "w") as z:  # an .npy whose header claims to be 100 MB long
        z.writestr("x.npy", b"\x93NUMPY\x02\x00" + (100 * MB).to_bytes(4, "little") + b"{" * 64)
    rss, cpu = _rss_mb(), time.process_time()
    for data, needle in [(b"", "not a readable npz"), (bare.getvalue(), "not a readable npz"),
                         (header.getvalue(), "not a readable array"), (bytes(giant_header[:200]), "npz"),
                         (blank, "over the limit")]:
        r = app_client.post(url, headers=a, files={"file": ("truth.npz", data)})
        assert r.status_code == 422 and needle in r.json()["detail"], (needle, r.text)
    assert _rss_mb() - rss < 256 and time.process_time() - cpu < 2


@pytest.fixture(scope="module")
def server(service_env, tmp_root):  # noqa: ANN001, ANN201
    s = LiveServer(service_env, tmp_root, "hostile", SIMUDY_UPLOAD_IDLE_SECONDS="1.5",
                   SIMUDY_DB_POOL_SIZE="3", SIMUDY_DB_MAX_OVERFLOW="2")
    yield s
    s.stop()


def _stall(url: str, key: str) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("POST /v1/checkpoints HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n"
               "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
               "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.pt\"\r\n\r\n").encode()
              + b"\0" * 100)
    return s


def test_a_stalled_upload_gets_408_and_twenty_change_nothing_else(server, teams):
    import concurrent.futures

    import httpx

    lone = _stall(server.url, teams["a_key"])
    lone.settimeout(10)
    assert b" 408 " in lone.recv(4096).split(b"\r\n", 1)[0]
    lone.close()
    stalled = [_stall(server.url, teams["a_key"]) for _ in range(20)]
    try:
        def read(_: int) -> int:
            return httpx.get(f"{server.url}/v1/jobs", headers=teams["a"], timeout=10).status_code

        with concurrent.futures.ThreadPoolExecutor(50) as pool:  # more requests than connections
            codes = list(pool.map(read, range(200)))
        assert codes == [200] * 200
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    finally:
        for s in stalled:
            s.close()


def test_a_database_outage_is_503_and_the_api_recovers(service_env, tmp_root, teams):
    import httpx
    from urllib.parse import urlparse

    from tests.service.proxy import CuttableProxy

    db = urlparse(service_env["SIMUDY_DATABASE_URL"])
    proxy = CuttableProxy(db.hostname, db.port or 5432)
    proxied = db._replace(netloc=f"{db.username}@127.0.0.1:{proxy.port}").geturl()
    server = LiveServer(service_env, tmp_root, "outage", SIMUDY_DATABASE_URL=proxied,
                        SIMUDY_DB_POOL_TIMEOUT_SECONDS="2")
    try:
        assert httpx.get(f"{server.url}/v1/jobs", headers=teams["a"], timeout=10).status_code == 200
        proxy.cut()
        for path in ("/v1/jobs", "/v1/checkpoints"):
            r = httpx.get(f"{server.url}{path}", headers=teams["a"], timeout=30)
            assert r.status_code == 503 and r.headers["Retry-After"], (path, r.text)
        r = httpx.get(f"{server.url}/readyz", timeout=30)
        assert r.status_code == 503 and "database" in r.json()["detail"]
        proxy.restore()
        wait_for(lambda: httpx.get(f"{server.url}/v1/jobs", headers=teams["a"], timeout=10).status_code == 200,
                 30, "the API to use the database again")
    finally:
        server.stop()
        proxy.close()


def test_concurrent_polls_of_one_job_share_one_read():
    """The per-process cache: one load in flight per key, its errors not kept."""
    import asyncio

    from api.cache import TTLCache

    cache: TTLCache[int] = TTLCache(max_entries=2)
    loads = []

    async def load() -> int:
        loads.append(1)
        await asyncio.sleep(0.05)
        return len(loads)

    async def scenario() -> None:
        values = await asyncio.gather(*(cache.get("job", load, ttl=10) for _ in range(50)))
        assert values == [1] * 50 and len(loads) == 1
        cache.drop("job")
        assert await cache.get("job", load, ttl=10) == 2

        async def broken() -> int:
            raise LookupError

        for _ in range(2):
            with pytest.raises(LookupError):
                await cache.get("bad", broken, ttl=10)
        for key in ("a", "b", "c"):  # bounded: the oldest entry goes
            await cache.get(key, load, ttl=10)
        assert "job" not in cache._entries and len(cache._entries) == 2

    asyncio.run(scenario())


def test_a_polled_entry_is_refreshed_in_the_background_and_never_served_past_its_ttl():
    import asyncio

    from api.cache import TTLCache

    cache: TTLCache[int] = TTLCache()
    loads: list[int] = []
    fail = False

    async def load() -> int:
        await asyncio.sleep(0.05)
        if fail:
            raise LookupError
        loads.append(1)
        return len(loads)

    async def scenario() -> None:
        nonlocal fail
        assert await cache.get("k", load, ttl=1.0) == 1
        await asyncio.sleep(0.6)  # past half the ttl: answered at once, one refresh starts
        started = time.monotonic()
        assert [await cache.get("k", load, ttl=1.0) for _ in range(20)] == [1] * 20
        assert time.monotonic() - started < 0.04, "a poll waited for the refresh"
        await asyncio.sleep(0.1)
        assert await cache.get("k", load, ttl=1.0) == 2 and len(loads) == 2
        await asyncio.sleep(1.1)  # past the ttl: the next poll waits for a fresh read
        assert await cache.get("k", load, ttl=1.0) == 3

        fail = True  # a refresh that fails drops the entry: the next poll sees the error
        await asyncio.sleep(0.6)
        assert await cache.get("k", load, ttl=1.0) == 3
        await asyncio.sleep(0.1)
        with pytest.raises(LookupError):
            await cache.get("k", load, ttl=1.0)

        fail = False  # a drop during a load: what that load read is not kept
        pending = asyncio.ensure_future(cache.get("d", load, ttl=10))
        await asyncio.sleep(0.01)
        cache.drop("d")
        assert await pending == 4 and "d" not in cache._entries

    asyncio.run(scenario())
