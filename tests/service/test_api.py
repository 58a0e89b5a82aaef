"""HTTP behaviour that needs no worker: auth, validation, uploads, limits, team isolation."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import boto3
import pytest
from sqlalchemy import func, select

from tests.service.helpers import RECIPE, settings, submit, tiny_target, upload, upload_pair


def _objects(env: dict) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=env["SIMUDY_S3_ENDPOINT_URL"], region_name="us-east-1")
    return [o["Key"] for o in s3.list_objects_v2(Bucket=env["bucket"]).get("Contents", [])]


def _checkpoint_rows() -> int:
    from service.db.models import Checkpoint
    from service.db.session import session_scope

    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Checkpoint))


def test_health_and_readiness(app_client):
    assert app_client.get("/healthz").json() == {"status": "ok"}
    r = app_client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}


def test_readiness_names_what_is_down(app_client, monkeypatch):
    from api.routes import health

    def broken() -> None:
        raise ConnectionError("connection refused")

    monkeypatch.setattr(health, "_check_broker", broken)
    r = app_client.get("/readyz")
    assert r.status_code == 503
    assert "broker" in r.json()["detail"] and r.json()["checks"]["database"] == "ok"


def test_catalog_lists_every_registered_method_architecture_and_metric(app_client):
    from core.architectures import architecture_names
    from core.methods import method_names
    from core.metrics import METRICS

    r = app_client.get("/v1/catalog")  # no key: it names code, not data
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["name"] for e in body["methods"]] == method_names() and "simudy" in method_names()
    assert [e["name"] for e in body["architectures"]] == architecture_names()
    assert [e["name"] for e in body["metrics"]] == METRICS.names()
    described = {e["name"]: e["description"] for group in body.values() if isinstance(group, list)
                 for e in group}
    assert all(described.values()), [n for n, d in described.items() if not d]
    assert "Tian et al." in described["simudy"] and "hidden" in described["mlp"]
    simudy = body["methods"][method_names().index("simudy")]
    schema = simudy["settings_schema"]  # enough for a client to draw a form
    assert {"num_images", "iterations", "image_lr", "clipping"} <= set(schema["properties"])
    assert simudy["defaults"]["image_lr"] is None and simudy["defaults"]["iterations"] == 30000
    assert simudy["metrics"] == ["loss", "cosine", "tv"] and simudy["needs_theta0"] is True


def test_published_settings_limits_are_the_servers(app_client):
    """The catalog's and the OpenAPI document's settings schemas state the limits this server
    enforces (service.limits), not the engine's far higher ones."""
    from service.config import get_config

    config = get_config()
    spec = app_client.get("/openapi.json").json()
    schemas = [m["settings_schema"] for m in app_client.get("/v1/catalog").json()["methods"]]
    schemas += spec["components"]["schemas"]["JobCreate"]["properties"]["settings"]["oneOf"]
    assert len(schemas) >= 6
    for schema in schemas:
        assert schema["properties"]["num_images"]["maximum"] == config.max_images
        assert schema["properties"]["iterations"]["maximum"] == config.max_iterations


def test_openapi_has_examples(app_client):
    spec = app_client.get("/openapi.json").json()
    assert "/v1/jobs/{job_id}/grid.png" in spec["paths"]
    assert spec["components"]["schemas"]["JobCreate"].get("examples")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer sdk_000000000000_x", "Basic abc"])
def test_requests_without_a_valid_key_are_refused(app_client, header):
    headers = {"Authorization": header} if header else {}
    r = app_client.get("/v1/jobs", headers=headers)
    assert r.status_code == 401
    assert isinstance(r.json()["detail"], str)


def test_revoked_key_stops_working(app_client, service_env):
    """Within SIMUDY_AUTH_CACHE_SECONDS (an API process remembers a valid key that long)."""
    import time

    from service.config import get_config
    from service.crud.teams import create_key, create_team, revoke_key
    from service.db.session import session_scope

    with session_scope() as s:
        _, key = create_key(s, team=create_team(s, name="revoke-me"))
    headers = {"Authorization": f"Bearer {key}"}
    assert app_client.get("/v1/jobs", headers=headers).status_code == 200
    with session_scope() as s:
        revoke_key(s, id_or_prefix=key.split("_")[1])
    revoked_at = time.monotonic()
    while app_client.get("/v1/jobs", headers=headers).status_code != 401:
        assert time.monotonic() - revoked_at < get_config().auth_cache_seconds + 1, "still accepted"
        time.sleep(0.1)
    time.sleep(get_config().auth_cache_seconds)
    assert app_client.get("/v1/jobs", headers=headers).status_code == 401


def test_upload_inspects_and_deduplicates(app_client, teams):
    t0, _, _ = tiny_target()
    first = upload(app_client, teams["a"], t0)
    assert first.status_code in (200, 201), first.text
    body = first.json()
    assert body["format"] == "safetensors" and body["num_tensors"] == 3
    assert body["num_parameters"] == 3 * 8 * 8 * 32 + 32 + 32 * 4
    again = upload(app_client, teams["a"], t0)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    other_team = upload(app_client, teams["b"], t0)
    assert other_team.json()["id"] != body["id"]


def test_malicious_pickle_is_refused_and_never_runs(app_client, teams, service_env):
    marker = Path(tempfile.gettempdir()) / f"simudy-pwned-{os.getpid()}"
    marker.unlink(missing_ok=True)

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import io

    import torch

    zipped = io.BytesIO()
    torch.save({"weight": Payload()}, zipped)  # the torch zip format, as a .pt would be
    rows, objects = _checkpoint_rows(), _objects(service_env)
    for data in (pickle.dumps({"weight": Payload()}, protocol=2), zipped.getvalue()):
        r = upload(app_client, teams["a"], data, name="evil.pt")
        assert r.status_code == 422, r.text
        assert "evil.pt refused" in r.json()["detail"] and "weights_only" not in r.json()["detail"]
        assert not marker.exists(), "the pickled payload ran"
    assert _checkpoint_rows() == rows and _objects(service_env) == objects


def test_garbage_upload_is_422_not_500(app_client, teams):
    r = upload(app_client, teams["a"], b"not a checkpoint at all" * 10, name="x.safetensors")
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = app_client.post("/v1/checkpoints", headers=teams["a"], files={"other": ("x", b"1")})
    assert r.status_code == 422 and "file" in r.json()["detail"]


def test_nan_weights_and_files_without_float_tensors_are_refused_at_upload(app_client, teams, service_env):
    import io

    import torch
    from safetensors.torch import save

    rows, objects = _checkpoint_rows(), _objects(service_env)
    weight = torch.ones(4, 3)
    weight[2, 0] = float("nan")
    ints = io.BytesIO()
    torch.save({"step": torch.arange(5)}, ints)
    for data, name, needle in [(save({"layers.0.weight": weight}), "nan.safetensors",
                                "nan.safetensors: tensor 'layers.0.weight' contains NaN or Inf"),
                               (ints.getvalue(), "ints.pt", "ints.pt holds no floating-point tensors")]:
        r = upload(app_client, teams["a"], data, name=name)
        assert r.status_code == 422 and needle in r.json()["detail"], r.text
    assert _checkpoint_rows() == rows and _objects(service_env) == objects


def test_upload_over_the_limit_is_413_and_leaves_nothing(app_client, teams, service_env):
    rows, objects = _checkpoint_rows(), _objects(service_env)
    spool_before = set(Path(tempfile.gettempdir()).glob("simudy-upload-*"))
    big = os.urandom(int(service_env["SIMUDY_MAX_UPLOAD_BYTES"]) + 1)
    r = upload(app_client, teams["a"], big)
    assert r.status_code == 413, r.text
    assert _checkpoint_rows() == rows and _objects(service_env) == objects
    assert set(Path(tempfile.gettempdir()).glob("simudy-upload-*")) == spool_before


def test_submit_validates_before_queueing(app_client, teams):
    theta0, thetaf = upload_pair(app_client, teams["a"])
    base = {"theta0": theta0, "thetaf": thetaf, "recipe": RECIPE}
    cases = [
        ({**base, "settings": settings(iterations=10**6)}, "iterations"),
        ({**base, "settings": {**settings(), "num_images": 1000}}, "num_images"),
        ({**base, "settings": {**settings(), "bogus": 1}}, "bogus"),
        ({**base, "recipe": {**RECIPE, "arch_options": {"hidden": [64]}}, "settings": settings()},
         "expects [64, 192]"),
        ({**base, "thetaf": theta0, "settings": settings()}, "identical"),
        ({**base, "theta0": "nope", "settings": settings()}, "theta0"),
        ({**base, "recipe": {**RECIPE, "augment": True},
          "settings": {**settings(), "input_span": "on"}}, "input_span 'on' needs"),
        ({**base, "recipe": {**RECIPE, "lr_schedule": {"name": "multistep", "milestones": [3, 1]}},
          "settings": settings()}, "lr_schedule.multistep: Value error, milestones must be"),
        ({**base, "recipe": {**RECIPE, "optimizer": {"name": "adamw", "lr": 0.01, "momentum": 0.9}},
          "settings": settings()}, "momentum and nesterov are SGD's: adamw has betas instead"),
        ({**base, "recipe": {**RECIPE, "optimizer": {"name": "adamw", "lr": 0.01}},
          "settings": {**settings(), "input_span": "on"}}, "trained with SGD without augmentation"),
        ({**base, "recipe": {**RECIPE, "frozen": ["layers.9"]}, "settings": settings()},
         "recipe.frozen: 'layers.9' names no parameter of mlp"),
        # JSON true is not the integer 1, nor 1 true (in the settings and in the recipe)
        ({**base, "settings": {**settings(), "num_images": True}}, "num_images: Input should be a valid integer"),
        ({**base, "settings": {**settings(), "iterations": True}}, "iterations: Input should be a valid integer"),
        ({**base, "settings": {**settings(), "clipping": {"enabled": 1}}}, "clipping.enabled: Input should be"),
        ({**base, "recipe": {**RECIPE, "epochs": True}, "settings": settings()}, "recipe.epochs: Input should be"),
    ]
    for body, needle in cases:
        r = app_client.post("/v1/jobs", headers=teams["a"], json=body)
        assert r.status_code == 422, (needle, r.text)
        assert needle in r.json()["detail"], (needle, r.json())


def test_team_isolation_on_every_endpoint(app_client, teams):
    job = submit(app_client, teams["a"], iterations=5)
    jid = job["id"]
    b = teams["b"]
    for method, path in [("get", f"/v1/jobs/{jid}"), ("get", f"/v1/jobs/{jid}/loss"),
                         ("get", f"/v1/jobs/{jid}/loss?format=csv"),
                         ("get", f"/v1/jobs/{jid}/grid.png"),
                         ("get", f"/v1/jobs/{jid}/reconstruction.npz"),
                         ("get", f"/v1/jobs/{jid}/pairs.png"), ("get", f"/v1/jobs/{jid}/metrics"),
                         ("post", f"/v1/jobs/{jid}/cancel"), ("delete", f"/v1/jobs/{jid}")]:
        r = getattr(app_client, method)(path, headers=b)
        assert r.status_code == 404, (path, r.status_code)
    for method in ("get", "delete"):
        r = getattr(app_client, method)(f"/v1/checkpoints/{job['theta0']}", headers=b)
        assert r.status_code == 404 and r.json()["detail"] == "checkpoint not found"
    assert job["theta0"] not in [c["id"] for c in app_client.get("/v1/checkpoints", headers=b).json()["data"]]
    r = app_client.post(f"/v1/jobs/{jid}/truth", headers=b, files={"file": ("t.npz", b"x")})
    assert r.status_code == 404
    assert jid not in [j["id"] for j in app_client.get("/v1/jobs", headers=b).json()["data"]]
    assert jid not in [e["object_id"] for e in app_client.get("/v1/audit", headers=b).json()["data"]]
    # team b cannot use team a's checkpoints either
    r = app_client.post("/v1/jobs", headers=b, json={"theta0": job["theta0"], "thetaf": job["thetaf"],
                                                    "recipe": RECIPE, "settings": settings()})
    assert r.status_code == 422 and "no checkpoint" in r.json()["detail"]
    # the owner still sees it
    assert app_client.get(f"/v1/jobs/{jid}", headers=teams["a"]).status_code == 200


def test_list_is_paginated_newest_first_and_filtered(app_client, service_env):
    from service.crud.teams import create_key, create_team
    from service.db.session import session_scope

    with session_scope() as s:
        _, key = create_key(s, team=create_team(s, name="pager"))
    h = {"Authorization": f"Bearer {key}"}
    ids = [submit(app_client, h, iterations=5)["id"] for _ in range(3)]
    app_client.post(f"/v1/jobs/{ids[0]}/cancel", headers=h)
    seen, cursor = [], None
    while True:
        page = app_client.get("/v1/jobs", headers=h, params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert page["count"] == len(page["data"]) <= 2
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    cancelled = app_client.get("/v1/jobs", headers=h, params={"status": "cancelled"}).json()
    assert [j["id"] for j in cancelled["data"]] == [ids[0]]
    assert app_client.get("/v1/jobs", headers=h, params={"cursor": "!!"}).status_code == 400
    for jid in ids[1:]:
        assert app_client.post(f"/v1/jobs/{jid}/cancel", headers=h).json()["status"] == "cancelled"
    actions = [e["action"] for e in app_client.get("/v1/audit", headers=h).json()["data"]]
    assert actions.count("submit") == 3 and actions.count("cancel") == 3 and "upload" in actions
    assert [e["action"] for e in app_client.get("/v1/audit", headers=h, params={"action": "cancel"}).json()["data"]] == ["cancel"] * 3
    for bad in ("bogus", "canceled"):  # an unknown filter names the known ones, as ?status= does
        r = app_client.get("/v1/audit", headers=h, params={"action": bad})
        assert r.status_code == 422 and "'sign_in'" in r.json()["detail"] and "'score'" in r.json()["detail"], r.text
    assert app_client.get("/v1/jobs", headers=h, params={"status": "bogus"}).status_code == 422


def test_checkpoints_are_listed_read_and_deleted_only_when_unused(app_client, service_env, monkeypatch):
    from service.crud.teams import create_key, create_team
    from service.db.session import session_scope

    with session_scope() as s:
        _, key = create_key(s, team=create_team(s, name="checkpoint-keeper"))
    h = {"Authorization": f"Bearer {key}"}
    job = submit(app_client, h, iterations=5)
    theta0, thetaf = job["theta0"], job["thetaf"]
    first = app_client.get("/v1/checkpoints", headers=h, params={"limit": 1}).json()
    assert [c["id"] for c in first["data"]] == [thetaf] and first["data"][0]["filename"] == "w.safetensors"
    second = app_client.get("/v1/checkpoints", headers=h, params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [c["id"] for c in second["data"]] == [theta0] and second["next_cursor"] is None
    assert app_client.get("/v1/checkpoints", headers=h, params={"cursor": "!!"}).status_code == 400
    read = app_client.get(f"/v1/checkpoints/{theta0}", headers=h)
    assert read.status_code == 200 and read.json()["id"] == theta0 and read.json()["format"] == "safetensors"

    objects = _objects(service_env)
    r = app_client.delete(f"/v1/checkpoints/{theta0}", headers=h)
    assert r.status_code == 409 and "used by 1 job" in r.json()["detail"]
    assert app_client.get(f"/v1/checkpoints/{theta0}", headers=h).status_code == 200
    assert _objects(service_env) == objects  # nothing lost
    from api.routes import checkpoints as route

    real_count, checks = route.jobs_using, []

    def misses_the_job_once(session, **kw):  # noqa: ANN001, ANN003
        """The job appears between the check and the delete: the foreign key must catch it."""
        checks.append(kw)
        return 0 if len(checks) == 1 else real_count(session, **kw)

    monkeypatch.setattr(route, "jobs_using", misses_the_job_once)
    r = app_client.delete(f"/v1/checkpoints/{theta0}", headers=h)
    assert r.status_code == 409 and "used by 1 job" in r.json()["detail"] and len(checks) == 2
    assert app_client.get(f"/v1/checkpoints/{theta0}", headers=h).status_code == 200
    assert _objects(service_env) == objects
    monkeypatch.undo()

    assert app_client.post(f"/v1/jobs/{job['id']}/cancel", headers=h).status_code == 200
    assert app_client.delete(f"/v1/jobs/{job['id']}", headers=h).status_code == 204
    assert app_client.delete(f"/v1/checkpoints/{theta0}", headers=h).status_code == 204
    assert app_client.get(f"/v1/checkpoints/{theta0}", headers=h).status_code == 404
    assert app_client.delete(f"/v1/checkpoints/{theta0}", headers=h).status_code == 404
    assert [c["id"] for c in app_client.get("/v1/checkpoints", headers=h).json()["data"]] == [thetaf]
    assert len(_objects(service_env)) == len(objects) - 1
    deleted = app_client.get("/v1/audit", headers=h, params={"action": "delete"}).json()["data"]
    assert [(e["object_type"], e["object_id"]) for e in deleted[:2]] == [("checkpoint", theta0), ("job", job["id"])]


def test_storage_keys_cannot_escape(tmp_path):
    from service.storage.local import LocalStore

    store = LocalStore(tmp_path / "objects")
    for bad in ("../x", "a/../../x", "/etc/passwd", "a//b", ".hidden", "a/./b"):
        with pytest.raises(ValueError):
            store.put_bytes(bad, b"1")
    store.put_bytes("teams/t/jobs/j/grid.png", b"png")
    assert store.get_bytes("teams/t/jobs/j/grid.png") == b"png"
    store.delete_prefix("teams/t/jobs/j/")
    assert store.list_keys() == []


def test_local_refuses_a_port_in_use_in_one_line_before_starting_anything(tmp_path, monkeypatch, capsys):
    import socket

    from simudy.cli import main

    monkeypatch.chdir(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["local", "--port", str(port)]) == 2
    out = capsys.readouterr()
    assert out.err == (f"simudy local: error: port {port} is in use: stop what uses it, or choose "
                       "another with --port\n")
    assert "Dashboard" not in out.out and not (tmp_path / "var").exists()  # no migration, no worker


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_port_in_use_in_one_line(workers, capsys):
    import socket

    from simudy.cli import main

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port), "--workers", workers]) == 2
    assert capsys.readouterr().err == (f"simudy serve: error: port {port} is in use: stop what uses "
                                       "it, or choose another with --port\n")


def test_local_logs_one_access_line_per_request(tmp_path):
    """As README says of every API (``SIMUDY_ACCESS_LOG``, default on): ``simudy local`` too."""
    import signal
    import subprocess
    import sys

    import httpx

    from tests.service.conftest import free_port, wait_for

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMUDY_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    out, err = (tmp_path / "out.log").open("w"), (tmp_path / "err.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "simudy", "local", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=out, stderr=err)
    try:
        wait_for(lambda: "Dashboard on" in (tmp_path / "out.log").read_text(), 120, "simudy local")
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, 60, "the API")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    logged = (tmp_path / "out.log").read_text() + (tmp_path / "err.log").read_text()
    assert '"GET /healthz HTTP/1.1" 200' in logged, logged
