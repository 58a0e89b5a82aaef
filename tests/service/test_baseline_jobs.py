"""The paper's baselines as jobs through the real worker (Celery subprocess, Redis, Postgres,
S3): KKT from thetaf alone, NTK from theta0 and thetaf, each with its own metrics, the 2N
candidates and the same result files, scored against the truth."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.service.helpers import NUM_IMAGES, RECIPE, final, tiny_target, upload_pair, wait_job


@pytest.fixture(scope="module")
def worker(workers):  # noqa: ANN001, ANN201
    return workers.start("w-baselines")


@pytest.mark.parametrize("method,metrics,with_theta0", [
    ("kkt", ["loss", "kkt", "kkt_relative", "prior", "lambda_mean"], False),
    ("ntk", ["loss", "l2", "l2_relative", "cosine", "tv"], True),
])
def test_a_baseline_runs_as_a_job(app_client, teams, worker, method, metrics, with_theta0):
    a = teams["a"]
    theta0, thetaf = upload_pair(app_client, a)
    body = {"thetaf": thetaf, "recipe": RECIPE, **({"theta0": theta0} if with_theta0 else {}),
            "settings": {"method": method, "num_images": NUM_IMAGES, "iterations": 6, "progress_every": 3}}
    r = app_client.post("/v1/jobs", headers=a, json=body)
    assert r.status_code == 201, r.text
    assert (r.json()["theta0"] is None) is (not with_theta0)
    assert r.json()["settings"]["candidate_ratio"] == 2.0
    job = wait_job(app_client, a, r.json()["id"], final, timeout=120)
    assert job["status"] == "succeeded", job
    assert job["summary"]["method"] == method and job["summary"]["num_images"] == 2 * NUM_IMAGES
    curve = app_client.get(f"/v1/jobs/{job['id']}/loss", headers=a).json()
    assert curve["metrics"] == metrics and [p["iteration"] for p in curve["points"]] == [3, 6]
    npz = np.load(io.BytesIO(app_client.get(f"/v1/jobs/{job['id']}/reconstruction.npz", headers=a).content))
    assert npz["x"].shape == (2 * NUM_IMAGES, 8, 8, 3)
    _, _, truth = tiny_target()
    scored = app_client.post(f"/v1/jobs/{job['id']}/truth", headers=a, files={"file": ("t.npz", truth)})
    assert scored.status_code == 200, scored.text
    assert scored.json()["metrics"]["num_reconstructions"] == 2 * NUM_IMAGES


def test_ntk_without_theta0_is_refused_and_the_catalog_lists_the_baselines(app_client, teams):
    a = teams["a"]
    _, thetaf = upload_pair(app_client, a)
    r = app_client.post("/v1/jobs", headers=a, json={
        "thetaf": thetaf, "recipe": RECIPE, "settings": {"method": "ntk", "num_images": 2, "iterations": 2}})
    assert r.status_code == 422 and "needs theta0" in r.json()["detail"]
    methods = {m["name"]: m for m in app_client.get("/v1/catalog", headers=a).json()["methods"]}
    assert {"simudy", "kkt", "ntk"} <= set(methods)
    assert methods["kkt"]["needs_theta0"] is False and "lambda_min" in methods["kkt"]["settings_schema"]["properties"]
