"""A tiny audit target (MLP hidden [32] on 3x8x8 images) and API helpers for the tests."""

from __future__ import annotations

import io
import time
from functools import lru_cache

RECIPE = {"architecture": "mlp", "arch_options": {"hidden": [32]}, "num_classes": 4,
          "image_shape": [3, 8, 8], "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 2,
          "batch_size": 2}
NUM_IMAGES = 4


def settings(iterations: int = 30, **extra) -> dict:  # noqa: ANN003
    return {"num_images": NUM_IMAGES, "iterations": iterations, "image_lr": 0.05, "seed": 0,
            "progress_every": 5, **extra}


@lru_cache(maxsize=1)
def tiny_target() -> tuple[bytes, bytes, bytes]:
    """(theta0 safetensors, thetaf safetensors, truth npz)."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from core.architectures import model_for_recipe
    from core.checkpoints import save_safetensors
    from core.data import to_normalized
    from core.recipe import parse_recipe
    from core.train import train

    recipe = parse_recipe(RECIPE)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(NUM_IMAGES, 8, 8, 3), dtype=np.uint8)
    y = np.arange(NUM_IMAGES, dtype=np.int64) % 4
    torch.manual_seed(0)
    model = model_for_recipe(recipe)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    thetaf = train(model, theta0, to_normalized(x, recipe), torch.as_tensor(y), recipe)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, state in (("t0", theta0), ("tf", thetaf)):
            save_safetensors(state, Path(tmp) / name)
            out.append((Path(tmp) / name).read_bytes())
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return out[0], out[1], buf.getvalue()


def upload(client, headers: dict, data: bytes, name: str = "w.safetensors"):  # noqa: ANN001, ANN201
    return client.post("/v1/checkpoints", headers=headers, files={"file": (name, data)})


def upload_pair(client, headers: dict) -> tuple[str, str]:  # noqa: ANN001
    t0, tf, _ = tiny_target()
    a, b = upload(client, headers, t0), upload(client, headers, tf)
    assert a.status_code in (200, 201), a.text
    assert b.status_code in (200, 201), b.text
    return a.json()["id"], b.json()["id"]


def submit(client, headers: dict, **settings_kw) -> dict:  # noqa: ANN001, ANN003
    theta0, thetaf = upload_pair(client, headers)
    r = client.post("/v1/jobs", headers=headers, json={
        "theta0": theta0, "thetaf": thetaf, "recipe": RECIPE, "settings": settings(**settings_kw)})
    assert r.status_code == 201, r.text
    return r.json()


def wait_job(client, headers: dict, job_id: str, predicate, timeout: float = 120) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if predicate(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not reach the expected state in {timeout} s: {job}")


def final(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")
