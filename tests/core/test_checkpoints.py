"""The loader never runs pickled code and names the key at fault; the manifest reader learns
names, shapes and dtypes without reading tensor data and refuses files whose sizes lie."""

from __future__ import annotations

import os
import pickle
import resource
import zipfile
from pathlib import Path

import pytest
import torch

from core.checkpoints import check_pair, load_checkpoint, read_manifest, save_safetensors
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


def test_safetensors_round_trip_and_manifest(tmp_path):
    sd = {"w": torch.randn(3, 4), "n": torch.tensor(5)}
    save_safetensors(sd, tmp_path / "c.safetensors")
    loaded = load_checkpoint(tmp_path / "c.safetensors")
    torch.testing.assert_close(loaded["w"], sd["w"])
    info = read_manifest(tmp_path / "c.safetensors")
    assert (info.format, info.num_tensors, info.num_parameters) == ("safetensors", 2, 12)
    assert info.tensors == {"w": ([3, 4], "float32"), "n": ([], "int64")}


def test_pytorch_manifest_matches_the_tensors(tmp_path):
    sd = {"module.a": torch.ones(2, 3, dtype=torch.float16), "b": torch.zeros(4, dtype=torch.int64)}
    torch.save({"state_dict": sd}, tmp_path / "c.pt")
    info = read_manifest(tmp_path / "c.pt")
    assert info.format == "pytorch"
    assert info.tensors == {"a": ([2, 3], "float16"), "b": ([4], "int64")}
    assert info.num_parameters == 6


def test_manifest_of_a_broadcast_view_is_refused_without_expanding_it(tmp_path):
    torch.save({"w": torch.zeros(1).expand(2**15, 2**15)}, tmp_path / "v.pt")  # 4 GiB if read
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="'w' is a broadcast"):
        read_manifest(tmp_path / "v.pt")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB


def _rewrite_zip(src: Path, dst: Path, *, compress: bool = False, truncate: bool = False) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if truncate and info.filename.endswith("data/0"):
                data = data[:8]
            zout.writestr(info.filename, data,
                          compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)


def test_compressed_or_truncated_records_are_refused(tmp_path):
    torch.save({"w": torch.zeros(10)}, tmp_path / "ok.pt")
    _rewrite_zip(tmp_path / "ok.pt", tmp_path / "zip.pt", compress=True)
    with pytest.raises(CheckpointError, match="compressed records"):
        read_manifest(tmp_path / "zip.pt")
    _rewrite_zip(tmp_path / "ok.pt", tmp_path / "cut.pt", truncate=True)
    with pytest.raises(CheckpointError, match="do not match the sizes"):
        read_manifest(tmp_path / "cut.pt")


def test_unsupported_dtypes_and_lying_safetensors_headers_are_refused(tmp_path):
    torch.save({"w": torch.zeros(4, dtype=torch.float8_e4m3fn)}, tmp_path / "f8.pt")
    with pytest.raises(CheckpointError, match="dtype float8_e4m3fn"):
        read_manifest(tmp_path / "f8.pt")
    header = b'{"w": {"dtype": "F32", "shape": [1000000, 1000000], "data_offsets": [0, 16]}}'
    (tmp_path / "lie.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    with pytest.raises(CheckpointError, match="does not fit its declared place"):
        read_manifest(tmp_path / "lie.safetensors")


def test_legacy_pickle_format_is_refused_by_the_manifest(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="refused: only the zip format"):
        read_manifest(tmp_path / "old.pt")


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


def test_eval_mode_recipe_with_changed_batchnorm_statistics_is_refused():
    trained = make_recipe(architecture="convnet", arch_options={"width": 4}, model_mode="train")
    theta0, thetaf, _, _ = trained_pair(trained)
    frozen = trained.model_copy(update={"model_mode": "eval"})
    with pytest.raises(CheckpointError, match="BatchNorm buffer 'features.1.running_mean'"):
        check_pair(frozen, theta0, thetaf)
    check_pair(trained, theta0, thetaf)


def test_pickle_refusal_is_ours_not_torchs_advice(tmp_path):
    torch.save({"w": torch.zeros(2), "evil": _Payload(tmp_path / "pwned")}, tmp_path / "evil.pt")
    for read in (load_checkpoint, read_manifest):
        with pytest.raises(CheckpointError) as err:
            read(tmp_path / "evil.pt")
        assert str(err.value) == ("evil.pt refused: not a safetensors file or a weights-only torch checkpoint "
                                  "(pickled objects are never loaded; nothing in it was run)")
    assert not (tmp_path / "pwned").exists()


def test_another_zip_such_as_an_npz_is_not_a_checkpoint(tmp_path):
    import numpy as np

    np.savez(tmp_path / "some.npz", x=np.zeros(3))
    for read in (load_checkpoint, read_manifest):
        with pytest.raises(CheckpointError, match=r"^some.npz is not a checkpoint: expected a .safetensors"):
            read(tmp_path / "some.npz")


def test_upload_refuses_nan_and_inf_and_files_without_float_tensors(tmp_path):
    from core.checkpoints import read_upload

    w = torch.randn(30, 4)  # a header of 128 bytes: its length's first byte is 0x80
    w[3, 1] = float("inf")
    save_safetensors({"module.a.weight": w, "b": torch.ones(2)}, tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").read_bytes()[0] == 0x80
    with pytest.raises(CheckpointError, match=r"^theta0: tensor 'a.weight' contains NaN or Inf$"):
        read_upload(tmp_path / "w.safetensors", "theta0")
    torch.save({"state_dict": {"ok": torch.ones(3), "bad": torch.tensor([float("nan")]).bfloat16()}}, tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="tensor 'bad' contains NaN or Inf"):
        read_upload(tmp_path / "n.pt", "n.pt")
    torch.save({"steps": torch.arange(4)}, tmp_path / "i.pt")
    with pytest.raises(CheckpointError, match="i.pt holds no floating-point tensors"):
        read_upload(tmp_path / "i.pt", "i.pt")
    save_safetensors({"a.weight": torch.randn(30, 4), "n": torch.arange(2)}, tmp_path / "ok.safetensors")
    assert read_upload(tmp_path / "ok.safetensors", "ok").num_parameters == 120
