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
    from api.storage import get_store

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
