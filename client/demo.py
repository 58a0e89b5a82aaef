"""``simudy demo``: the whole audit through the HTTP API in a few minutes on a CPU. Trains a
tiny MLP on bundled CIFAR-10 images, uploads theta0/thetaf, reconstructs, then scores the
reconstruction against the true images."""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

from client.http import ServiceClient, progress_line, read_key
from core.errors import SimudyError

RECIPE = {"architecture": "mlp", "arch_options": {"hidden": [256]}, "num_classes": 10,
          "image_shape": [3, 32, 32], "optimizer": {"name": "sgd", "lr": 0.05},
          "epochs": 10, "batch_size": 10}


def sample_bytes() -> bytes:
    return (resources.files("simudy") / "samples" / "cifar10_sample.npz").read_bytes()


def train_pair(num_images: int) -> tuple[dict, dict, bytes]:
    import numpy as np
    import torch

    from core.architectures import model_for_recipe
    from core.data import load_dataset, save_npz_bytes, to_normalized
    from core.recipe import parse_recipe
    from core.train import train

    recipe = parse_recipe(RECIPE)
    x, y = load_dataset(sample_bytes())
    x, y = x[:num_images], y[:num_images]
    torch.manual_seed(0)
    model = model_for_recipe(recipe)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    thetaf = train(model, theta0, to_normalized(x, recipe), torch.as_tensor(y), recipe, seed=0)
    return theta0, thetaf, save_npz_bytes(x=x, y=np.asarray(y, dtype=np.int64))


def run_demo(*, url: str, key_file: str, iterations: int, num_images: int = 10) -> int:
    from core.checkpoints import save_safetensors

    key = read_key(key_file)
    print(f"training a tiny MLP on {num_images} bundled CIFAR-10 images ...", flush=True)
    theta0, thetaf, truth = train_pair(num_images)
    with ServiceClient.connect(url, key) as client, tempfile.TemporaryDirectory() as tmp:
        client.ping()
        ids = {}
        for name, state in (("theta0", theta0), ("thetaf", thetaf)):
            file = Path(tmp) / f"{name}.safetensors"
            save_safetensors(state, file)
            ids[name] = client.upload_checkpoint(file, what=f"upload {name}")["id"]
            print(f"uploaded {name}: {ids[name]}")
        settings = {"num_images": num_images, "iterations": iterations, "image_lr": 0.05,
                    "tv_weight": 0.001, "seed": 0, "progress_every": 10,
                    "cosine_t_max": iterations, "clipping": {"enabled": False}}
        job = client.submit_job(theta0=ids["theta0"], thetaf=ids["thetaf"], recipe=RECIPE,
                                settings=settings, name="demo")
        print(f"job {job['id']} queued")
        job = client.wait(job["id"], on_update=lambda j: print("\r" + progress_line(j) + "   ", end="", flush=True))
        print()
        if job["status"] != "succeeded":
            raise SimudyError(f"job {job['status']}: {job['error']}")
        metrics = client.score(job["id"], truth)["metrics"]
    print(f"SSIM (paper) {metrics.get('ssim_paper_mean'):.3f}, SSIM {metrics.get('ssim_mean'):.3f}, "
          f"PSNR {metrics.get('psnr_mean'):.2f} dB")
    print(f"grid:  {url}/v1/jobs/{job['id']}/grid.png")
    print(f"pairs: {url}/v1/jobs/{job['id']}/pairs.png")
    sys.stdout.flush()
    return 0
