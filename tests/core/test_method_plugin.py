"""A method is one registry entry: a trivial method registered from outside the engine runs
through ``simudy reconstruct`` with the same files as SimuDy (the service test runs it as a
job)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import torch

from core.catalog import catalog
from core.checkpoints import save_safetensors
from core.methods import method_names, parse_settings
from tests.conftest import run_cli


def test_a_plugin_method_runs_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMUDY_METHOD_MODULES", "tests.plugins.trivial_method")

    save_safetensors({"layers.0.weight": torch.full((4, 12), 0.25), "layers.0.bias": torch.full((4,), 0.25),
                      "layers.1.weight": torch.full((2, 4), 0.25)}, tmp_path / "f.safetensors")
    (tmp_path / "recipe.json").write_text(json.dumps({
        "architecture": "mlp", "arch_options": {"hidden": [4]}, "num_classes": 2,
        "image_shape": [3, 2, 2], "epochs": 1, "batch_size": 2}))
    r = run_cli("reconstruct", "--method", "trivial", "--thetaf", tmp_path / "f.safetensors",
                "--recipe", tmp_path / "recipe.json", "--num-images", 3, "--iterations", 4,
                "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "trivial" in method_names()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out/loss.csv").read_text())))
    assert list(rows[0]) == ["iteration", "loss", "moved"] and len(rows) == 4
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["method"] == "trivial" and summary["target"] == 0.25 and summary["final_moved"] > 0
    with np.load(tmp_path / "out/reconstruction.npz") as z:
        assert z["x"].shape == (3, 2, 2, 3)
    entry = next(e for e in catalog()["methods"] if e["name"] == "trivial")
    assert entry["defaults"]["step"] == 0.5 and entry["needs_theta0"] is False
    assert parse_settings({"method": "trivial", "num_images": 2}).iterations == 5


def test_the_plugin_shows_its_current_images(monkeypatch):
    from core.execution import Execution
    from core.methods import get_method, load_method_modules
    from core.methods.base import MethodInputs
    from core.recipe import parse_recipe

    load_method_modules(["tests.plugins.trivial_method"])
    recipe = parse_recipe({"architecture": "mlp", "arch_options": {"hidden": [4]}, "num_classes": 2,
                           "image_shape": [3, 2, 2]})
    method = get_method("trivial")(MethodInputs(recipe, {"w": torch.full((2,), 0.5)}),
                                   parse_settings({"method": "trivial", "num_images": 2, "iterations": 1}),
                                   Execution(device="cpu"))
    assert method.preview_images().eq(0).all()
    method.run()
    assert method.preview_images().shape == (2, 3, 2, 2) and method.preview_images().eq(0.25).all()
