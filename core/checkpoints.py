"""Checkpoint I/O without ever running pickled code.

Reads ``.safetensors`` (a JSON header and raw bytes) and PyTorch files only through
``torch.load(weights_only=True)``, which refuses any pickle that would import or call code
before anything runs. Accepts a bare state dict or one under ``state_dict`` / ``model``, strips
DataParallel's ``module.`` prefix, and checks checkpoints against an architecture, naming the key
at fault.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.errors import CheckpointError
from core.recipe import Recipe

Tensors = dict[str, torch.Tensor]
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class CheckpointInfo:
    format: str  # "safetensors" or "pytorch"
    num_tensors: int
    num_parameters: int  # elements in floating-point tensors


def detect_format(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(_ZIP_MAGIC) or head[:1] == b"\x80":
        return "pytorch"
    if len(head) == 9 and head[8:9] == b"{":  # u64 header length, then the JSON header
        return "safetensors"
    raise CheckpointError("not a checkpoint: expected a .safetensors file or a PyTorch state dict (.pt)")


def load_checkpoint(path: str | Path) -> Tensors:
    """Load a state dict safely, unwrap it and check every entry is a finite tensor."""
    path = Path(path)
    try:
        fmt = detect_format(path)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path.name}: {err.strerror}") from None
    if fmt == "safetensors":
        try:
            raw = load_file(str(path), device="cpu")
        except (SafetensorError, ValueError, OSError) as err:
            raise CheckpointError(f"{path.name} is not a valid safetensors file: {err}") from None
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            reason = str(err).split("\n")[0].replace("Weights only load failed. ", "")
            raise CheckpointError(
                f"{path.name} refused: it is a pickle that holds more than tensors (only plain "
                f"state dicts are accepted; nothing in it was run): {reason[:200]}") from None
        except (RuntimeError, EOFError, ValueError, OSError) as err:
            raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint: "
                                  f"{str(err).splitlines()[0][:200]}") from None
    return normalize_state_dict(raw, path.name)


def normalize_state_dict(raw: object, name: str = "checkpoint") -> Tensors:
    if isinstance(raw, dict):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{name} does not hold a state dict (a mapping of names to tensors)")
    state: Tensors = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{name}: entry {key!r} is a {type(value).__name__}, not a tensor")
        clean = key[len("module."):] if isinstance(key, str) and key.startswith("module.") else key
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{name}: tensor {clean!r} contains NaN or Inf")
        state[clean] = value
    return state


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    path = Path(path)
    state = load_checkpoint(path)
    return CheckpointInfo(format=detect_format(path), num_tensors=len(state),
                          num_parameters=sum(v.numel() for v in state.values() if v.is_floating_point()))


def save_safetensors(state: Tensors, path: str | Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path))


def check_against_model(state: Tensors, expected: Tensors, name: str) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(f"{name} does not fit the architecture: missing key {missing[0]!r}"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if unexpected:
        raise CheckpointError(f"{name} does not fit the architecture: unexpected key {unexpected[0]!r}"
                              + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
    for k, ref in expected.items():
        got = state[k]
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(f"{name}: {k!r} has shape {list(got.shape)}, the architecture "
                                  f"expects {list(ref.shape)}")
        if ref.is_floating_point() and not got.is_floating_point():
            raise CheckpointError(f"{name}: {k!r} has dtype {str(got.dtype).replace('torch.', '')}, "
                                  "expected a floating-point tensor")


def check_pair(recipe: Recipe, theta0: Tensors, thetaf: Tensors) -> None:
    """Both checkpoints fit the recipe's architecture and describe one training run."""
    from core.simudy import model_for_recipe
    from core.training import split_state_dict

    model = model_for_recipe(recipe)
    expected = model.state_dict()
    check_against_model(theta0, expected, "theta0")
    check_against_model(thetaf, expected, "thetaf")
    params0, buffers0 = split_state_dict(model, theta0)
    paramsf, buffersf = split_state_dict(model, thetaf)
    if all(torch.equal(params0[k].float(), paramsf[k].float()) for k in params0):
        raise CheckpointError("theta0 and thetaf have identical parameters: nothing was trained")
    if recipe.batchnorm == "frozen":
        for k, v in buffers0.items():
            if v.is_floating_point() and not torch.equal(v, buffersf[k]):
                raise CheckpointError(
                    f"theta0 and thetaf disagree on BatchNorm buffer {k!r}, but the recipe says "
                    "batchnorm 'frozen' (statistics never change): use batchnorm 'train'")
