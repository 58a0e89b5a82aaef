"""The loader never runs pickled code and names the key at fault."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from core.checkpoints import check_pair, inspect_checkpoint, load_checkpoint, save_safetensors
from core.errors import CheckpointError

from .conftest import make_recipe, trained_pair


class _Payload:
    """Unpickling this runs ``os.system`` (a classic malicious checkpoint)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-zip", "legacy-pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"layers.0.weight": torch.zeros(2, 2), "evil": _Payload(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_raw_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_wrapped_state_dict_and_module_prefix_are_unwrapped(tmp_path):
    sd = {"module.a": torch.ones(2), "module.b": torch.zeros(1, 3)}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "c.pt")
    assert set(load_checkpoint(tmp_path / "c.pt")) == {"a", "b"}
    torch.save({"model": {"x": torch.ones(1)}}, tmp_path / "m.pt")
    assert set(load_checkpoint(tmp_path / "m.pt")) == {"x"}


def test_safetensors_round_trip_and_inspection(tmp_path):
    sd = {"w": torch.randn(3, 4), "n": torch.tensor(5)}
    save_safetensors(sd, tmp_path / "c.safetensors")
    loaded = load_checkpoint(tmp_path / "c.safetensors")
    torch.testing.assert_close(loaded["w"], sd["w"])
    info = inspect_checkpoint(tmp_path / "c.safetensors")
    assert (info.format, info.num_tensors, info.num_parameters) == ("safetensors", 2, 12)


def test_nan_is_named(tmp_path):
    torch.save({"ok": torch.ones(2), "bad": torch.tensor([1.0, float("nan")])}, tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="'bad' contains NaN"):
        load_checkpoint(tmp_path / "n.pt")


def test_garbage_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"hello world, not a model")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "g.pt")


def test_non_tensor_entry_is_named(tmp_path):
    torch.save({"w": torch.ones(1), "step": 5}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="'step' is a int"):
        load_checkpoint(tmp_path / "s.pt")


@pytest.fixture(scope="module")
def pair():
    recipe = make_recipe()
    theta0, thetaf, _, _ = trained_pair(recipe)
    return recipe, theta0, thetaf


def test_good_pair_passes(pair):
    check_pair(*pair)


def test_wrong_shape_is_named(pair):
    recipe, theta0, thetaf = pair
    bad = dict(thetaf, **{"layers.1.weight": torch.zeros(16, 33)})
    with pytest.raises(CheckpointError, match=r"thetaf: 'layers.1.weight' has shape \[16, 33\]"):
        check_pair(recipe, theta0, bad)


def test_missing_and_unexpected_keys_are_named(pair):
    recipe, theta0, thetaf = pair
    missing = {k: v for k, v in theta0.items() if k != "layers.0.bias"}
    with pytest.raises(CheckpointError, match="theta0 .*missing key 'layers.0.bias'"):
        check_pair(recipe, missing, thetaf)
    with pytest.raises(CheckpointError, match="unexpected key 'extra'"):
        check_pair(recipe, theta0, dict(thetaf, extra=torch.ones(1)))


def test_integer_weights_are_refused(pair):
    recipe, theta0, thetaf = pair
    bad = dict(theta0, **{"layers.2.weight": theta0["layers.2.weight"].long()})
    with pytest.raises(CheckpointError, match="'layers.2.weight' has dtype int64"):
        check_pair(recipe, bad, thetaf)


def test_mixed_checkpoints_from_different_architectures(pair):
    recipe, theta0, _ = pair
    other = make_recipe(arch_options={"hidden": [64, 16]})
    _, other_f, _, _ = trained_pair(other)
    with pytest.raises(CheckpointError, match="thetaf: 'layers.0.weight' has shape"):
        check_pair(recipe, theta0, other_f)


def test_identical_checkpoints_are_refused(pair):
    recipe, theta0, _ = pair
    with pytest.raises(CheckpointError, match="nothing was trained"):
        check_pair(recipe, theta0, theta0)


def test_frozen_batchnorm_recipe_with_changed_statistics_is_refused():
    trained = make_recipe(architecture="convnet", arch_options={"width": 4}, batchnorm="train")
    theta0, thetaf, _, _ = trained_pair(trained)
    frozen = trained.model_copy(update={"batchnorm": "frozen"})
    with pytest.raises(CheckpointError, match="BatchNorm buffer 'features.1.running_mean'"):
        check_pair(frozen, theta0, thetaf)
    check_pair(trained, theta0, thetaf)
