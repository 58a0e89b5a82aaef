"""Jobs run by a real Celery worker (subprocess) over Redis, Postgres and S3 (moto)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.service.helpers import final, submit, tiny_target, wait_job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def worker(workers):  # noqa: ANN001, ANN201
    return workers.start("w1")


def test_job_runs_end_to_end_and_is_scored(app_client, teams, worker, service_env):
    a = teams["a"]
    job = submit(app_client, a, iterations=20)
    assert job["status"] == "queued" and job["progress"]["iterations"] == 20
    job = wait_job(app_client, a, job["id"], final, timeout=90)
    assert job["status"] == "succeeded", job
    assert job["progress"]["iteration"] == 20 and job["progress"]["fraction"] == 1.0
    assert job["attempts"] == 1 and job["worker"] == "w1@test" and job["finished_at"]

    grid = app_client.get(f"/v1/jobs/{job['id']}/grid.png", headers=a)
    assert grid.status_code == 200 and grid.content.startswith(PNG_MAGIC)
    from PIL import Image

    assert Image.open(io.BytesIO(grid.content)).size[0] > 8
    npz = np.load(io.BytesIO(app_client.get(f"/v1/jobs/{job['id']}/reconstruction.npz", headers=a).content))
    assert npz["x"].shape == (4, 8, 8, 3) and npz["x"].dtype == np.uint8

    points = app_client.get(f"/v1/jobs/{job['id']}/loss", headers=a).json()["points"]
    assert [p["iteration"] for p in points] == [5, 10, 15, 20]
    assert all(p["loss"] > 0 for p in points)
    csv = app_client.get(f"/v1/jobs/{job['id']}/loss", headers=a, params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "iteration,loss,cosine,tv" and len(csv.text.splitlines()) == 5

    assert app_client.get(f"/v1/jobs/{job['id']}/metrics", headers=a).status_code == 404
    bad = app_client.post(f"/v1/jobs/{job['id']}/truth", headers=a, files={"file": ("t.npz", b"junk")})
    assert bad.status_code == 422
    _, _, truth = tiny_target()
    scored = app_client.post(f"/v1/jobs/{job['id']}/truth", headers=a, files={"file": ("t.npz", truth)})
    assert scored.status_code == 200, scored.text
    metrics = scored.json()["metrics"]
    assert -1 <= metrics["ssim_paper_mean"] <= 1 and "psnr_mean" in metrics
    assert app_client.get(f"/v1/jobs/{job['id']}/metrics", headers=a).json()["metrics"] == metrics
    pairs = app_client.get(f"/v1/jobs/{job['id']}/pairs.png", headers=a)
    assert pairs.content.startswith(PNG_MAGIC)

    events = app_client.get("/v1/audit", headers=a).json()["data"]
    mine = [(e["action"], e["detail"].get("file") if e["detail"] else None)
            for e in events if e["object_id"] == job["id"]]
    assert ("submit", None) in mine and ("download", "grid.png") in mine and ("score", None) in mine

    # delete removes the job and its stored objects
    from service.storage import get_store

    store = get_store()
    prefix = f"teams/{teams['a_team']}/jobs/{job['id']}/"
    assert store.list_keys(prefix)
    assert app_client.delete(f"/v1/jobs/{job['id']}", headers=a).status_code == 204
    assert app_client.get(f"/v1/jobs/{job['id']}", headers=a).status_code == 404
    assert store.list_keys(prefix) == []


def test_cancel_stops_a_running_job(app_client, teams, worker):
    a = teams["a"]
    job = submit(app_client, a, iterations=3000)
    wait_job(app_client, a, job["id"], lambda j: j["progress"]["iteration"] >= 5 or final(j), 90)
    r = app_client.post(f"/v1/jobs/{job['id']}/cancel", headers=a)
    assert r.status_code == 200 and r.json()["cancel_requested"]
    job = wait_job(app_client, a, job["id"], final, timeout=30)
    assert job["status"] == "cancelled"
    assert job["progress"]["iteration"] < 3000
    assert app_client.post(f"/v1/jobs/{job['id']}/cancel", headers=a).status_code == 409


def test_lr_search_scores_candidates_and_continues_with_the_best(app_client, teams, worker):
    a = teams["a"]
    candidates = [0.02, 0.1, 0.3]
    job = submit(app_client, a, iterations=10,
                 lr_search={"candidates": candidates, "updates": 3, "score_window": 2})
    assert job["phase"] == "lr_search"
    assert [c["lr"] for c in job["lr_search"]] == candidates
    job = wait_job(app_client, a, job["id"], final, timeout=120)
    assert job["status"] == "succeeded", job
    scores = {c["lr"]: c["score"] for c in job["lr_search"]}
    assert all(s is not None for s in scores.values()), job["lr_search"]
    assert job["chosen_lr"] == min(scores, key=scores.get)
    assert job["phase"] == "run" and job["summary"]["simulated_lr"] == job["chosen_lr"]
    assert job["progress"]["iteration"] == 10


def test_a_plugin_method_runs_as_a_job_without_theta0(app_client, teams, worker):
    """A method is one registry entry: the trivial test method (registered by the
    SIMUDY_METHOD_MODULES plugin in the API and the worker) runs as a job, from thetaf alone,
    with its own metrics."""
    from tests.service.helpers import RECIPE, upload_pair

    a = teams["a"]
    _, thetaf = upload_pair(app_client, a)
    body = {"thetaf": thetaf, "recipe": RECIPE,
            "settings": {"method": "trivial", "num_images": 3, "iterations": 6, "progress_every": 3}}
    r = app_client.post("/v1/jobs", headers=a, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["theta0"] is None and r.json()["settings"]["step"] == 0.5
    job = wait_job(app_client, a, r.json()["id"], final, timeout=90)
    assert job["status"] == "succeeded", job
    assert job["summary"]["method"] == "trivial" and job["summary"]["final_moved"] > 0
    curve = app_client.get(f"/v1/jobs/{job['id']}/loss", headers=a).json()
    assert curve["metrics"] == ["loss", "moved"] and [p["iteration"] for p in curve["points"]] == [3, 6]
    full = app_client.get(f"/v1/jobs/{job['id']}/loss.csv", headers=a).text.splitlines()
    assert full[0] == "iteration,loss,moved" and len(full) == 7
    no_theta0 = {**body, "settings": {"num_images": 3, "iterations": 6}}  # simudy needs theta0
    r = app_client.post("/v1/jobs", headers=a, json=no_theta0)
    assert r.status_code == 422 and "needs theta0" in r.json()["detail"]


def test_value_checks_run_in_the_worker_and_fail_fast_readably(app_client, teams, worker, monkeypatch):
    """Uploads are scanned for NaN/Inf now, but a checkpoint stored before that (or by another
    path) still never runs: the job fails at once in the worker, naming the tensor."""
    from safetensors.torch import load as load_st
    from safetensors.torch import save as save_st

    from api.routes import checkpoints
    from core.checkpoints import read_manifest
    from tests.service.helpers import RECIPE, settings, upload

    t0, tf, _ = tiny_target()

    poisoned = load_st(tf)
    poisoned["layers.1.weight"] = poisoned["layers.1.weight"].clone()
    poisoned["layers.1.weight"][0, 0] = float("nan")
    a = teams["a"]
    assert upload(app_client, a, save_st(poisoned)).status_code == 422  # refused at upload now
    monkeypatch.setattr(checkpoints, "read_upload", read_manifest)  # as stored before the scan
    ids = [upload(app_client, a, data).json()["id"] for data in (t0, save_st(poisoned))]
    monkeypatch.undo()
    r = app_client.post("/v1/jobs", headers=a, json={"theta0": ids[0], "thetaf": ids[1],
                                                     "recipe": RECIPE, "settings": settings()})
    assert r.status_code == 201, r.text
    job = wait_job(app_client, a, r.json()["id"], final, timeout=60)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"] == "thetaf: tensor 'layers.1.weight' contains NaN or Inf", job["error"]
