"""`simudy submit` and `simudy demo` against a real server: `simudy serve` in a subprocess,
a Celery worker, Postgres, Redis and S3 (moto)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from simudy.cli import main
from tests.service.conftest import ROOT, free_port, wait_for
from tests.service.helpers import NUM_IMAGES, RECIPE, settings, tiny_target

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def server(service_env, workers, tmp_root):  # noqa: ANN001, ANN201
    import httpx

    workers.start("submit-worker")
    port = free_port()
    log = open(tmp_root / "server-submit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "simudy", "serve", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, **{k: v for k, v in service_env.items() if k != "bucket"},
                                 "SIMUDY_MAX_UPLOAD_BYTES": str(50 * 2**20)},  # the demo's MLP is 3 MB
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_root / "server-submit.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 60, "simudy serve")
    yield url
    proc.terminate()
    proc.wait(timeout=15)


@pytest.fixture()
def target(tmp_path, teams):  # noqa: ANN001, ANN201
    t0, tf, truth = tiny_target()
    files = {"theta0": t0, "thetaf": tf, "truth": truth}
    paths = {name: tmp_path / f"{name}.bin" for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    paths["recipe"] = tmp_path / "recipe.json"
    paths["recipe"].write_text(json.dumps(RECIPE))
    paths["settings"] = tmp_path / "settings.json"
    paths["settings"].write_text(json.dumps(settings(iterations=10, progress_every=5)))
    paths["key"] = tmp_path / "key"
    paths["key"].write_text(teams["a_key"] + "\n")
    return paths


def _argv(target, url: str, *extra: str) -> list[str]:  # noqa: ANN001
    return ["submit", "--theta0", str(target["theta0"]), "--thetaf", str(target["thetaf"]),
            "--recipe", str(target["recipe"]), "--num-images", str(NUM_IMAGES),
            "--settings", str(target["settings"]), "--url", url, "--key-file", str(target["key"]),
            "--poll-seconds", "0.3", *extra]


def test_submit_runs_the_job_and_writes_what_reconstruct_writes(server, target, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_argv(target, server, "--name", "cli audit", "--truth", str(target["truth"]),
                      "--out", str(out))) == 0
    job = json.loads((out / "job.json").read_text())
    assert job["status"] == "succeeded" and job["name"] == "cli audit"
    assert job["progress"]["iteration"] == 10 and job["settings"]["num_images"] == NUM_IMAGES
    x = np.load(out / "reconstruction.npz")["x"]
    assert x.shape == (NUM_IMAGES, 8, 8, 3) and x.dtype == np.uint8
    assert (out / "grid.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "pairs.png").read_bytes()[:8] == PNG_MAGIC
    rows = list(csv.DictReader(io.StringIO((out / "loss.csv").read_text())))
    assert [int(r["iteration"]) for r in rows] == [5, 10]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_originals"] == NUM_IMAGES and -1 <= metrics["ssim_paper_mean"] <= 1
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert f"/v1/jobs/{job['id']}" in captured.err and "ssim_paper_mean" in captured.err


def test_submit_no_wait_prints_the_job_id(server, target, capsys):
    import httpx

    assert main(_argv(target, server, "--no-wait")) == 0
    job_id = capsys.readouterr().out.strip()
    key = target["key"].read_text().strip()
    job = httpx.get(f"{server}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert job["id"] == job_id and job["status"] in ("queued", "running", "succeeded")


def test_submit_bad_input_is_one_line_and_uploads_nothing(server, target, tmp_path, capsys):
    from sqlalchemy import func, select

    from api.db.models import Checkpoint
    from api.db.session import session_scope

    def uploaded() -> int:
        with session_scope() as s:
            return s.scalar(select(func.count()).select_from(Checkpoint))

    before = uploaded()
    wrong_recipe = tmp_path / "wrong.json"
    wrong_recipe.write_text(json.dumps({**RECIPE, "arch_options": {"hidden": [64]}}))
    bad_key = tmp_path / "bad-key"
    bad_key.write_text("sdk_000000000000_nope")
    cases = [
        (_argv(target, server, "--recipe", str(wrong_recipe)), "expects [64, 192]"),
        (_argv(target, server, "--key-file", str(tmp_path / "missing")), "no API key in"),
        (_argv(target, server, "--key-file", str(bad_key)), "HTTP 401"),
        (_argv(target, "http://127.0.0.1:9"), "cannot reach the service"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, needle
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, (needle, err)
    assert uploaded() == before


def test_demo_runs_through_the_service(server, target, capsys):
    assert main(["demo", "--url", server, "--key-file", str(target["key"]), "--iterations", "10"]) == 0
    out = capsys.readouterr().out
    assert "SSIM (paper)" in out and f"{server}/v1/jobs/" in out and "grid.png" in out
