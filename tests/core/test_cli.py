"""``simudy train | reconstruct | evaluate`` end to end on a tiny case, and bad input. Every
command runs in-process (``run_cli``) but one, which checks the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import run_cli

simudy = run_cli


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8),
             y=np.arange(40) % 10)
    np.savez(d / "small.npz", x=np.zeros((10, 7, 7, 3), np.uint8), y=np.arange(10))  # not the recipe's
    np.savez(d / "chw.npz", x=np.zeros((10, 3, 8, 8), np.uint8), y=np.arange(10))  # channels first
    np.savez(d / "small-labels.npz", x=np.zeros((2, 8, 8, 3), np.uint8), y=np.array([0, 1]))
    (d / "recipe.json").write_text(json.dumps({
        "architecture": "mlp", "arch_options": {"hidden": [32]}, "num_classes": 10,
        "image_shape": [3, 8, 8], "optimizer": {"name": "sgd", "lr": 0.05}, "epochs": 3,
        "batch_size": 10, "shuffle": False, "batchnorm": "frozen"}))
    (d / "boolean-iterations.json").write_text(json.dumps({"iterations": True}))
    (d / "boolean-epochs.json").write_text(json.dumps({"architecture": "mlp", "epochs": True}))
    return d


@pytest.fixture(scope="module")
def trained(workdir):
    r = subprocess.run(  # the installed entry point, once; every other command runs in-process
        [sys.executable, "-m", "simudy", "train", "--dataset", workdir / "data.npz",
         "--recipe", workdir / "recipe.json", "--images-per-class", "2", "--seed", "0",
         "--out", workdir / "model"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return workdir


def test_train_reconstruct_evaluate(trained):
    workdir = trained
    for name in ("theta0.safetensors", "thetaf.safetensors", "recipe.json", "train_images.npz"):
        assert (workdir / "model" / name).exists()
    with np.load(workdir / "model" / "train_images.npz") as z:
        assert z["x"].shape == (20, 8, 8, 3) and sorted(z["y"].tolist()) == sorted(list(range(10)) * 2)

    r = simudy("reconstruct", "--theta0", workdir / "model/theta0.safetensors",
               "--thetaf", workdir / "model/thetaf.safetensors", "--recipe", workdir / "model/recipe.json",
               "--num-images", 20, "--iterations", 5, "--out", workdir / "rec")
    assert r.returncode == 0, r.stderr
    summary = json.loads((workdir / "rec/summary.json").read_text())
    assert summary["iterations"] == 5 and summary["num_images"] == 20
    assert (workdir / "rec/grid.png").read_bytes().startswith(b"\x89PNG")
    assert len((workdir / "rec/loss.csv").read_text().splitlines()) == 6
    with np.load(workdir / "rec/reconstruction.npz") as z:
        assert z["x"].dtype == np.uint8 and z["x"].shape == (20, 8, 8, 3)

    r = simudy("evaluate", "--reconstruction", workdir / "rec/reconstruction.npz",
               "--truth", workdir / "model/train_images.npz", "--out", workdir / "eval")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((workdir / "eval/metrics.json").read_text())
    assert {"ssim_paper_mean", "ssim_mean", "psnr_mean", "pairs"} <= set(metrics)
    assert len(metrics["pairs"]) == 20
    assert (workdir / "eval/pairs.png").read_bytes().startswith(b"\x89PNG")


def test_lr_search_from_the_cli(trained):
    workdir = trained
    (workdir / "s.json").write_text(json.dumps({"lr_search": {"candidates": [0.05, 0.01], "updates": 2}}))
    r = simudy("reconstruct", "--theta0", workdir / "model/theta0.safetensors",
               "--thetaf", workdir / "model/thetaf.safetensors", "--recipe", workdir / "model/recipe.json",
               "--num-images", 20, "--iterations", 3, "--settings", workdir / "s.json",
               "--out", workdir / "rec-lr")
    assert r.returncode == 0, r.stderr
    summary = json.loads((workdir / "rec-lr/summary.json").read_text())
    assert [c["lr"] for c in summary["lr_search"]] == [0.05, 0.01]
    assert summary["simulated_lr"] == min(summary["lr_search"], key=lambda c: c["score"])["lr"]


@pytest.mark.parametrize("extra, relabel", [
    (["--binary", "0,1,2,3,4"], lambda x, y: (x, np.isin(y, [0, 1, 2, 3, 4]).astype(np.int64))),
    (["--classes", "3", "7"], lambda x, y: (x[np.isin(y, [3, 7])], y[np.isin(y, [3, 7])])),
], ids=["binary", "classes"])
def test_train_scores_eval_images_labelled_as_the_training(workdir, extra, relabel):
    """--eval's labels are the training's: mapped by --binary, restricted to --classes."""
    import torch

    from core.architectures import model_for_recipe
    from core.checkpoints import load_checkpoint
    from core.data import load_dataset, to_normalized
    from core.recipe import load_recipe
    from core.train import accuracy

    out = workdir / f"eval-{extra[0][2:]}"
    r = simudy("train", "--dataset", workdir / "data.npz", "--recipe", workdir / "recipe.json",
               "--images-per-class", "1", "--eval", workdir / "data.npz", "--seed", "0", *extra,
               "--out", out)
    assert r.returncode == 0, r.stderr
    recipe = load_recipe(workdir / "recipe.json")
    x, y = relabel(*load_dataset(workdir / "data.npz"))
    expected = accuracy(model_for_recipe(recipe), load_checkpoint(out / "thetaf.safetensors"),
                        to_normalized(x, recipe), torch.from_numpy(y))
    assert json.loads((out / "train_summary.json").read_text())["test_accuracy"] == expected


@pytest.mark.parametrize("args, message", [
    (["reconstruct", "--theta0", "missing.pt", "--thetaf", "missing.pt", "--recipe", "recipe.json",
      "--num-images", "4", "--out", "o"], "cannot read checkpoint missing.pt"),
    (["train", "--dataset", "data.npz", "--recipe", "nope.json", "--images-per-class", "1",
      "--seed", "0", "--out", "o"], "cannot read recipe"),
    (["train", "--dataset", "data.npz", "--recipe", "recipe.json", "--images-per-class", "9",
      "--seed", "0", "--out", "o"], "class 0 has only 4 images"),
    (["evaluate", "--reconstruction", "recipe.json", "--truth", "data.npz", "--out", "o"],
     "reconstruction is not a readable npz"),
    (["evaluate", "--reconstruction", "data.npz", "--truth", "chw.npz", "--out", "o"],
     "truth: x must be uint8 (N, H, W, C) with images of [8, 8, 3] like the reconstruction's, "
     "found [10, 3, 8, 8]"),
    (["train", "--dataset", "data.npz", "--recipe", "recipe.json", "--images-per-class", "0",
      "--seed", "0", "--out", "o"], "--images-per-class must be at least 1, got 0"),
    (["train", "--dataset", "data.npz", "--recipe", "recipe.json", "--images-per-class", "-1",
      "--seed", "0", "--out", "o"], "--images-per-class must be at least 1, got -1"),
    (["train", "--dataset", "data.npz", "--recipe", "recipe.json", "--images-per-class", "1",
      "--classes", "42", "--seed", "0", "--out", "o"], "--classes: class 42 has no images in data.npz"),
    (["train", "--dataset", "data.npz", "--recipe", "recipe.json", "--images-per-class", "1",
      "--binary", "x,y", "--seed", "0", "--out", "o"], "--binary: expected comma-separated class numbers"),
    (["train", "--dataset", "data.npz", "--recipe", "recipe.json", "--images-per-class", "1",
      "--eval", "small.npz", "--seed", "0", "--out", "o"],  # one line: refused before any epoch
     "small.npz: x must be uint8 (N, H, W, C) = (N, 8, 8, 3) for the recipe's image_shape [3, 8, 8] "
     "(C, H, W), found [10, 7, 7, 3]"),
    (["train", "--dataset", "data.npz", "--recipe", "recipe.json", "--images-per-class", "1",
      "--classes", "3", "--eval", "small-labels.npz", "--seed", "0", "--out", "o"],
     "--eval small-labels.npz has no image of the --classes 3"),
    (["train", "--dataset", "recipe.json", "--recipe", "recipe.json", "--all", "--seed", "0", "--out", "o"],
     "recipe.json is not a readable npz file: it must be an npz with arrays x and y"),
    (["reconstruct", "--theta0", "data.npz", "--thetaf", "data.npz", "--recipe", "recipe.json",
      "--num-images", "4", "--out", "o"],
     "data.npz is not a checkpoint: expected a .safetensors file or a PyTorch state dict"),
    (["reconstruct", "--thetaf", "x.pt", "--recipe", "recipe.json", "--num-images", "2",
      "--settings", '{"tv_weight": 0', "--out", "o"], "--settings is not valid JSON"),
    (["reconstruct", "--thetaf", "x.pt", "--recipe", "recipe.json", "--num-images", "2",
      "--settings", '{"tv_weight": "much"}', "--out", "o"], "tv_weight"),
    (["compare", "--methods", "kkt", "--thetaf", "x.pt", "--recipe", "recipe.json", "--truth", "data.npz",
      "--num-images", "2", "--settings", '{"kkt": 1}', "--out", "o"],
     "--settings: expected {method: {option: value}}"),
    (["reconstruct", "--num-images", "3"], "the following arguments are required"),
    (["reconstruct", "--thetaf", "x.pt", "--recipe", "recipe.json", "--num-images", "0", "--out", "o"],
     "invalid settings: num_images"),
    (["reconstruct", "--thetaf", "x.pt", "--recipe", "recipe.json", "--num-images", "2",
      "--settings", "data.npz", "--out", "o"], "cannot read settings data.npz"),
    (["reconstruct", "--thetaf", "x.pt", "--recipe", "recipe.json", "--num-images", "2",
      "--settings", "boolean-iterations.json", "--out", "o"],
     "invalid settings: iterations: Input should be a valid integer"),
    (["train", "--dataset", "data.npz", "--recipe", "boolean-epochs.json", "--images-per-class", "1",
      "--seed", "0", "--out", "o"], "invalid recipe: epochs: Input should be a valid integer"),
])
def test_bad_input_exits_2_with_one_line(workdir, args, message):
    r = simudy(*args, cwd=workdir)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "allow_pickle" not in r.stderr
    assert not (workdir / "o").exists()


def test_settings_can_be_inline_json(trained):
    workdir = trained
    r = simudy("reconstruct", "--theta0", workdir / "model/theta0.safetensors",
               "--thetaf", workdir / "model/thetaf.safetensors", "--recipe", workdir / "model/recipe.json",
               "--num-images", 20, "--iterations", 2, "--settings", '{"tv_weight": 0, "seed": 3}',
               "--out", workdir / "rec-inline")
    assert r.returncode == 0, r.stderr
    summary = json.loads((workdir / "rec-inline/summary.json").read_text())
    assert summary["settings"]["tv_weight"] == 0 and summary["settings"]["seed"] == 3


def test_a_truth_of_another_shape_is_refused_before_compare_runs(trained):
    workdir = trained
    r = simudy("compare", "--methods", "simudy,kkt", "--theta0", workdir / "model/theta0.safetensors",
               "--thetaf", workdir / "model/thetaf.safetensors", "--recipe", workdir / "model/recipe.json",
               "--truth", workdir / "small.npz", "--num-images", 20, "--iterations", 2,
               "--out", workdir / "cmp-bad")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "truth small.npz: x must be uint8 (N, H, W, C) = (N, 8, 8, 3)" in r.stderr
    assert not (workdir / "cmp-bad").exists()  # nothing ran


class _Payload:
    """Unpickling this runs ``os.system``: it must never run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_theta0_is_refused_in_our_words_and_never_runs(trained):
    import torch

    workdir = trained
    marker = workdir / "pwned"
    torch.save({"layers.0.weight": torch.zeros(2), "evil": _Payload(marker)}, workdir / "evil.pt")
    r = simudy("reconstruct", "--theta0", workdir / "evil.pt", "--thetaf", workdir / "model/thetaf.safetensors",
               "--recipe", workdir / "model/recipe.json", "--num-images", 20, "--out", workdir / "rec-evil")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("evil.pt refused: not a safetensors file or a weights-only torch checkpoint (pickled objects "
            "are never loaded") in r.stderr
    assert "weights_only" not in r.stderr and "likely succeed" not in r.stderr
    assert not marker.exists()
