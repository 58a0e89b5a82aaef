"""One job through the real service on a given device: ``simudy migrate``, a team and key,
``simudy worker`` with ``SIMUDY_DEVICE`` set, ``simudy serve``, then the demo's tiny target
(an MLP trained on the bundled CIFAR-10 images) uploaded, reconstructed and scored over HTTP.
Embedded database, broker and storage in a temporary folder: nothing else is needed, so it
runs on a GPU machine that reaches no server. What a client saw is returned."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.provenance import REPO
from client.demo import RECIPE, train_pair
from client.http import ServiceClient
from core.checkpoints import save_safetensors
from core.errors import SimudyError

NUM_IMAGES = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def run_job_through_service(work: Path, *, device: str, quick: bool, timeout: float) -> dict[str, Any]:
    # the service's own defaults: nothing inherited from the caller's SIMUDY_* settings
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SIMUDY_")}
    env = {**inherited, "SIMUDY_DATABASE_URL": f"sqlite:///{work}/simudy.sqlite",
           "SIMUDY_BROKER_URL": f"sqla+sqlite:///{work}/broker.sqlite",
           "SIMUDY_STORAGE_URL": f"file://{work}/objects", "SIMUDY_DEVICE": device,
           "SIMUDY_PROGRESS_FLUSH_SECONDS": "1", "SIMUDY_PREVIEW_SECONDS": "5"}

    def simudy(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "simudy", *args], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise SimudyError(f"simudy {' '.join(args)}: {r.stderr.strip()[-300:]}")
        return r.stdout

    simudy("migrate")
    simudy("admin", "create-team", "suite")
    key = simudy("admin", "create-key", "--team", "suite").strip().splitlines()[-1]
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "simudy", *cmd], env=env, cwd=REPO,
                              stdout=open(work / f"{cmd[0]}.log", "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
             for cmd in (["worker", "--loglevel", "WARNING"], ["serve", "--port", str(port)])]
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 120:
                raise SimudyError("the API did not come up in 120 s")
            time.sleep(0.5)
        theta0, thetaf, truth = train_pair(NUM_IMAGES)
        iterations = 20 if quick else 300
        with ServiceClient.connect(url, key) as client:
            ids = {}
            for name, state in (("theta0", theta0), ("thetaf", thetaf)):
                path = work / f"{name}.safetensors"
                save_safetensors(state, path)
                ids[name] = client.upload_checkpoint(path)["id"]
            submitted = time.monotonic()
            job = client.submit_job(theta0=ids["theta0"], thetaf=ids["thetaf"], recipe=RECIPE, settings={
                "num_images": NUM_IMAGES, "iterations": iterations, "image_lr": 0.05, "progress_every": 10,
                "cosine_t_max": iterations, "clipping": {"enabled": False}}, name="gpu suite")
            seen: list[int] = []
            job = client.wait(job["id"], on_update=lambda j: seen.append(j["progress"]["iteration"]),
                              poll_seconds=1.0)
            seconds = time.monotonic() - submitted
            metrics = client.score(job["id"], truth)["metrics"] if job["status"] == "succeeded" else None
            curve = client.http.get(f"/v1/jobs/{job['id']}/loss").json()
    finally:
        for proc in procs:
            _stop(proc)
    return {"status": job["status"], "error": job["error"], "iterations": iterations,
            "summary_device": (job.get("summary") or {}).get("device"),
            "summary_precision": (job.get("summary") or {}).get("precision"),
            "seconds_from_submit_to_done": seconds, "progress_seen": sorted(set(seen)),
            "loss_points": len(curve.get("points", [])),
            "ssim_paper_mean": metrics["ssim_paper_mean"] if metrics else None,
            "worker_device_setting": device}
