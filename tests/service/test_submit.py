"""`simudy submit` and `simudy demo` against a real server: `simudy serve` in a subprocess,
a Celery worker, Postgres, Redis and S3 (moto)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from simudy.cli import main
from tests.service.conftest import LiveServer
from tests.service.helpers import NUM_IMAGES, RECIPE, settings, tiny_target

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def server(service_env, workers, tmp_root):  # noqa: ANN001, ANN201
    workers.start("submit-worker")
    live = LiveServer(service_env, tmp_root, "submit",
                      SIMUDY_MAX_UPLOAD_BYTES=str(50 * 2**20))  # the demo's MLP is 3 MB
    yield live.url
    live.stop()


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
    assert [int(r["iteration"]) for r in rows] == list(range(1, 11))  # every iteration, as reconstruct
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_originals"] == NUM_IMAGES and -1 <= metrics["ssim_paper_mean"] <= 1
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert f"/v1/jobs/{job['id']}" in captured.err and "ssim_paper_mean" in captured.err


def test_submit_and_reconstruct_write_identical_files(server, target, tmp_path):
    """The worker and the CLI drive the same pipeline: same files, same bytes (timings aside)."""
    via_service, local = tmp_path / "service", tmp_path / "local"
    assert main(_argv(target, server, "--out", str(via_service))) == 0
    argv = _argv(target, server, "--out", str(local))
    cut = argv.index("--url")
    assert main(["reconstruct", *argv[1:cut], "--out", str(local), "--device", "cpu", "--threads", "1"]) == 0
    from core.outputs import FILES

    assert set(FILES) <= {p.name for p in via_service.iterdir()}
    assert sorted(p.name for p in local.iterdir()) == sorted(FILES)
    assert (local / "loss.csv").read_text() == (via_service / "loss.csv").read_text()
    assert (local / "grid.png").read_bytes() == (via_service / "grid.png").read_bytes()
    with np.load(local / "reconstruction.npz") as a, np.load(via_service / "reconstruction.npz") as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    timing = {"elapsed_seconds", "seconds_per_iteration"}
    summary = [{k: v for k, v in json.loads((d / "summary.json").read_text()).items() if k not in timing}
               for d in (local, via_service)]
    assert summary[0] == summary[1]


def test_submit_no_wait_prints_the_job_id(server, target, capsys):
    import httpx

    assert main(_argv(target, server, "--no-wait")) == 0
    job_id = capsys.readouterr().out.strip()
    key = target["key"].read_text().strip()
    job = httpx.get(f"{server}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert job["id"] == job_id and job["status"] in ("queued", "running", "succeeded")


def test_submit_bad_input_is_one_line_and_uploads_nothing(server, target, tmp_path, capsys):
    from sqlalchemy import func, select

    from service.db.models import Checkpoint
    from service.db.session import session_scope

    def uploaded() -> int:
        with session_scope() as s:
            return s.scalar(select(func.count()).select_from(Checkpoint))

    before = uploaded()
    wrong_recipe = tmp_path / "wrong.json"
    wrong_recipe.write_text(json.dumps({**RECIPE, "arch_options": {"hidden": [64]}}))
    bad_key = tmp_path / "bad-key"
    bad_key.write_text("sdk_000000000000_nope")
    channels_first = tmp_path / "chw.npz"
    np.savez(channels_first, x=np.zeros((NUM_IMAGES, 3, 8, 8), np.uint8), y=np.arange(NUM_IMAGES))
    cases = [
        (_argv(target, server, "--recipe", str(wrong_recipe)), "expects [64, 192]"),
        (_argv(target, server, "--key-file", str(tmp_path / "missing")), "no API key in"),
        (_argv(target, server, "--key-file", str(bad_key)), "HTTP 401"),
        (_argv(target, "http://127.0.0.1:9"), "cannot reach the service"),
        (_argv(target, server, "--truth", str(channels_first)),  # checked before the job, not after
         "truth chw.npz: x must be uint8 (N, H, W, C) = (N, 8, 8, 3)"),
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
