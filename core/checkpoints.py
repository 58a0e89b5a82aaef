"""Checkpoint I/O without ever running pickled code, and without trusting declared sizes.

Reads ``.safetensors`` (a JSON header and raw bytes) and PyTorch zip files only through
``torch.load(weights_only=True)``, which refuses any pickle that would import or call code
before anything runs. Accepts a bare state dict or one under ``state_dict`` / ``model``, strips
DataParallel's ``module.`` prefix, and checks checkpoints against an architecture, naming the key
at fault.

Two depths of reading:

- ``read_manifest`` learns each tensor's name, shape and dtype without materialising any tensor
  data (the safetensors header; a PyTorch zip memory-mapped, its records checked against the
  sizes the pickle declares). The HTTP API records this at upload and compares it with the
  model built on the ``meta`` device at submit (``check_manifest``): no tensor work there.
  ``read_upload`` adds, at upload, a scan of the values from a memory map (NaN/Inf, no float
  tensor at all), so a job never queues on weights its worker would refuse.
- ``load_checkpoint`` loads the values (worker, CLI), and ``check_values`` refuses NaN/Inf,
  identical trained parameters, frozen parameters that changed, and BatchNorm statistics that
  changed under an eval-mode recipe.
"""

from __future__ import annotations

import json
import math
import mmap
import pickle
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.architectures import model_for_recipe
from core.errors import CheckpointError
from core.recipe import Recipe
from core.parameters import check_frozen, trainable_split
from core.types import Tensors

_ZIP_MAGIC = b"PK\x03\x04"
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_TENSORS = 20_000
SCAN_ELEMENTS = 2**24  # values checked at a time for NaN/Inf at upload
# safetensors dtype codes and torch dtypes a checkpoint may hold (float8 and complex are refused)
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                      "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                      "BOOL": "bool"}
DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4,
               "int16": 2, "int8": 1, "uint8": 1, "bool": 1}
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Manifest:
    """Each tensor's shape and dtype (``{name: [shape, dtype]}``), read without its data."""

    format: str  # "safetensors" or "pytorch"
    tensors: dict[str, tuple[list[int], str]]

    @property
    def num_tensors(self) -> int:
        return len(self.tensors)

    @property
    def num_parameters(self) -> int:
        """Elements in floating-point tensors."""
        return sum(math.prod(shape) for shape, dtype in self.tensors.values() if dtype in FLOAT_DTYPES)

    def to_json(self) -> dict[str, list]:
        return {k: [list(shape), dtype] for k, (shape, dtype) in self.tensors.items()}

    @classmethod
    def from_json(cls, fmt: str, data: dict[str, Any]) -> "Manifest":
        return cls(fmt, {k: (list(v[0]), str(v[1])) for k, v in data.items()})


def detect_format(path: Path, name: str | None = None) -> str:
    not_a_checkpoint = CheckpointError(f"{name or path.name} is not a checkpoint: expected a .safetensors "
                                       "file or a PyTorch state dict (.pt)")
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(_ZIP_MAGIC):
        if not _holds_torch_pickle(path):  # another zip (an .npz...): torch's own error is cryptic
            raise not_a_checkpoint
        return "pytorch"
    if len(head) == 9 and head[8:9] == b"{":  # u64 header length (its first byte may be 0x80), then JSON
        return "safetensors"
    if head[:1] == b"\x80":
        return "pytorch"
    raise not_a_checkpoint


def _holds_torch_pickle(path: Path) -> bool:
    """torch.save's zip: every record under one folder, with its pickle at ``<folder>/data.pkl``
    (unreadable zips pass here and are refused, with their reason, by the readers)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.count("/") == 1 and n.endswith("/data.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return True


def _detect(path: Path, name: str) -> str:
    try:
        return detect_format(path, name)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {name}: {err.strerror}") from None


# -- manifest (no tensor data) -----------------------------------------------------------------
def read_manifest(path: str | Path, name: str | None = None) -> Manifest:
    """Names, shapes and dtypes of a checkpoint's tensors, reading no tensor data; refuses
    anything whose declared sizes do not match the file (compressed records, truncated data,
    broadcast views that would expand when read). Messages call the file ``name`` (default:
    its file name)."""
    path = Path(path)
    return _read(path, name or path.name)[0]


def _read(path: Path, name: str) -> tuple[Manifest, dict[str, torch.Tensor]]:
    """The manifest and the floating-point tensors as memory-mapped views (no data read until
    a view is used), from one reading of the file."""
    if _detect(path, name) == "safetensors":
        header_len, header = _safetensors_header(path, name)
        return (Manifest("safetensors", _safetensors_manifest(path, name, header_len, header)),
                _safetensors_float_views(path, header_len, header))
    tensors, state = _pytorch_manifest(path, name)
    return Manifest("pytorch", tensors), state


def _safetensors_header(path: Path, name: str) -> tuple[int, dict[str, Any]]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{name} is not a valid safetensors file: its header length is "
                                  "larger than the file")
        try:
            header = json.loads(f.read(header_len))
        except (ValueError, UnicodeDecodeError):
            raise CheckpointError(f"{name} is not a valid safetensors file: unreadable header") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name} is not a valid safetensors file: the header is not an object")
    header.pop("__metadata__", None)
    return header_len, header


def _safetensors_manifest(path: Path, name: str, header_len: int,
                          header: dict[str, Any]) -> dict[str, tuple[list[int], str]]:
    data_len = path.stat().st_size - 8 - header_len
    tensors, spans = {}, []
    for key, entry in header.items():
        try:
            dtype_code, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            shape = [int(d) for d in shape]
            start, end = int(start), int(end)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{name}: tensor {key!r} has a malformed header entry") from None
        dtype = SAFETENSORS_DTYPES.get(dtype_code)
        if dtype is None:
            raise CheckpointError(f"{name}: tensor {key!r} has dtype {dtype_code}, which is not "
                                  "supported (use float32, float16, bfloat16, float64 or integers)")
        if any(d < 0 for d in shape) or not 0 <= start <= end <= data_len \
                or end - start != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise CheckpointError(f"{name} is not a valid safetensors file: tensor {key!r} does not "
                                  "fit its declared place in the file")
        tensors[key] = (shape, dtype)
        spans.append((start, end))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        raise CheckpointError(f"{name} is not a valid safetensors file: tensors overlap")
    return _normalize_manifest(tensors, name)


def _pytorch_manifest(path: Path, name: str) -> tuple[dict[str, tuple[list[int], str]], dict]:
    """The manifest, and the state dict memory-mapped (its data read only when used)."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{name} refused: only the zip format of torch.save (PyTorch >= 1.6) "
                              "or safetensors is accepted, not a bare or legacy pickle")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{name} is not a readable PyTorch checkpoint: {err}") from None
    if len(infos) > MAX_TENSORS + 16:
        raise CheckpointError(f"{name} holds too many records")
    records = []
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise CheckpointError(f"{name} refused: it holds compressed records (torch.save never "
                                  "compresses; re-save it with torch.save or as safetensors)")
        parts = info.filename.split("/")
        if len(parts) == 3 and parts[1] == "data":
            records.append(info.file_size)
    state = _unwrap(_torch_load(path, name, mmap=True), name)
    tensors, storages = {}, {}
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{name}: entry {key!r} is a {type(t).__name__}, not a tensor")
        dtype = str(t.dtype).replace("torch.", "")
        if dtype not in DTYPE_BYTES:
            raise CheckpointError(f"{name}: tensor {key!r} has dtype {dtype}, which is not supported "
                                  "(use float32, float16, bfloat16, float64 or integers)")
        storage = t.untyped_storage()
        extent = t.storage_offset() + sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if s) + 1
        if t.numel() and (any(st == 0 and s > 1 for s, st in zip(t.shape, t.stride()))
                          or extent * t.element_size() > storage.nbytes()):
            raise CheckpointError(f"{name}: tensor {key!r} is a broadcast or out-of-range view; "
                                  "save real tensors (e.g. .contiguous().clone())")
        storages[storage.data_ptr()] = storage.nbytes()
        tensors[key] = (list(t.shape), dtype)
    if Counter(storages.values()) - Counter(records):  # a declared size no data record has
        raise CheckpointError(f"{name} is not a valid PyTorch checkpoint: its data records do not "
                              "match the sizes its tensors declare")
    return _normalize_manifest(tensors, name), state


def _normalize_manifest(tensors: dict[str, tuple[list[int], str]], name: str) -> dict[str, tuple[list[int], str]]:
    if not tensors:
        raise CheckpointError(f"{name} does not hold a state dict (a mapping of names to tensors)")
    if len(tensors) > MAX_TENSORS:
        raise CheckpointError(f"{name} holds more than {MAX_TENSORS} tensors")
    out = {}
    for key, value in tensors.items():
        if not isinstance(key, str) or not key or len(key) > 1000 or "\x00" in key:
            raise CheckpointError(f"{name}: a tensor name is empty, too long or not text")
        out[_strip_module(key)] = value
    return out


def _strip_module(key: str) -> str:
    """DataParallel's ``module.`` prefix, taken off every tensor name."""
    return key[len("module."):] if isinstance(key, str) and key.startswith("module.") else key


def _check_finite(name: str, key: str, t: torch.Tensor) -> None:
    """Refuse a NaN or Inf weight, scanning a slice at a time (a memory-mapped tensor is read
    no more than a slice at once)."""
    if t.is_floating_point() and t.numel() and \
            not all(torch.isfinite(part).all() for part in t.reshape(-1).split(SCAN_ELEMENTS)):
        raise CheckpointError(f"{name}: tensor {_strip_module(key)!r} contains NaN or Inf")


def read_upload(path: str | Path, name: str) -> Manifest:
    """What the API records for an upload: its manifest, once the values a job could never use
    are refused (a weight that is NaN or Inf, no floating-point tensor at all), at upload rather
    than in the worker after the job was queued. The values are scanned from a memory map, a
    slice at a time: no more memory than the slice, and time like the hashing of the upload."""
    info, tensors = _read(Path(path), name)
    if info.num_parameters == 0:
        raise CheckpointError(f"{name} holds no floating-point tensors: not a model's weights")
    for key, t in tensors.items():
        _check_finite(name, key, t)
    return info


def _safetensors_float_views(path: Path, header_len: int, header: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Each floating-point tensor of a safetensors file as a view of its bytes in a (copy on
    write, never written) memory map; the header was checked by ``_safetensors_manifest``."""
    with open(path, "rb") as f:
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    views = {}
    for key, entry in header.items():
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype in FLOAT_DTYPES and math.prod(entry["shape"]):
            views[key] = torch.frombuffer(buffer, dtype=getattr(torch, dtype), count=math.prod(entry["shape"]),
                                          offset=8 + header_len + entry["data_offsets"][0])
    return views


# -- values ------------------------------------------------------------------------------------
_PICKLE_REFUSED = ("{name} refused: not a safetensors file or a weights-only torch checkpoint (pickled "
                   "objects are never loaded; nothing in it was run)")


def _torch_load(path: Path, name: str, *, mmap: bool = False) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:  # torch's text advises weights_only=False: never shown
        raise CheckpointError(_PICKLE_REFUSED.format(name=name)) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError, TypeError) as err:
        if "weights_only" in str(err):
            raise CheckpointError(_PICKLE_REFUSED.format(name=name)) from None
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(f"{name} is not a readable PyTorch checkpoint: {first}") from None


def load_checkpoint(path: str | Path) -> Tensors:
    """Load a state dict safely, unwrap it and check every entry is a finite tensor."""
    path = Path(path)
    if _detect(path, path.name) == "safetensors":
        try:
            raw = load_file(str(path), device="cpu")
        except (SafetensorError, ValueError, OSError) as err:
            raise CheckpointError(f"{path.name} is not a valid safetensors file: {err}") from None
    else:
        raw = _torch_load(path, path.name)
    state = _unwrap(raw, path.name)
    out: Tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path.name}: entry {key!r} is a {type(value).__name__}, not a tensor")
        _check_finite(path.name, key, value)
        out[_strip_module(key)] = value
    return out


def _unwrap(raw: object, name: str) -> dict:
    if isinstance(raw, dict):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{name} does not hold a state dict (a mapping of names to tensors)")
    return raw


def save_safetensors(state: Tensors, path: str | Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path))


# -- fitting a recipe --------------------------------------------------------------------------
def manifest_of(state: Tensors) -> dict[str, tuple[list[int], str]]:
    return {k: (list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()}


def check_manifest(recipe: Recipe, tensors: dict[str, tuple[list[int], str]], name: str) -> None:
    """The checkpoint's keys, shapes and dtypes fit the recipe's architecture (built on the
    meta device: no memory, no tensor data)."""
    with torch.device("meta"):
        model = model_for_recipe(recipe)
    check_frozen(model, recipe)
    expected = manifest_of(model.state_dict())
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing:
        raise CheckpointError(f"{name} does not fit the architecture: missing key {missing[0]!r}"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if unexpected:
        raise CheckpointError(f"{name} does not fit the architecture: unexpected key {unexpected[0]!r}"
                              + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
    for k, (shape, dtype) in expected.items():
        got_shape, got_dtype = tensors[k]
        if list(got_shape) != list(shape):
            raise CheckpointError(f"{name}: {k!r} has shape {list(got_shape)}, the architecture "
                                  f"expects {list(shape)}")
        if dtype in FLOAT_DTYPES and got_dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{name}: {k!r} has dtype {got_dtype}, expected a floating-point tensor")


def _at_common_precision(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both tensors in the narrower of their two float dtypes: a checkpoint saved in half
    precision holds the same untouched values, rounded."""
    low = min((a.dtype, b.dtype), key=lambda d: torch.finfo(d).bits if d.is_floating_point else 64)
    return a.to(low), b.to(low)


def check_values(recipe: Recipe, theta0: Tensors | None, thetaf: Tensors) -> None:
    """What only the values tell: theta0 and thetaf differ in the trained parameters and agree
    on the frozen ones, and an eval-mode recipe left the BatchNorm statistics alone. (``load_checkpoint`` already refused NaN and Inf.)"""
    if theta0 is None:
        return
    with torch.device("meta"):
        model = model_for_recipe(recipe)
    params0, frozen0, buffers0 = trainable_split(model, theta0, recipe)
    paramsf, frozenf, buffersf = trainable_split(model, thetaf, recipe)
    if all(torch.equal(params0[k].float(), paramsf[k].float()) for k in params0):
        raise CheckpointError("theta0 and thetaf have identical parameters: nothing was trained"
                              + (" (outside recipe.frozen)" if frozen0 else ""))
    for k, v in frozen0.items():
        if not torch.equal(*_at_common_precision(v, frozenf[k])):
            raise CheckpointError(f"recipe.frozen freezes {k!r}, but theta0 and thetaf disagree on it: "
                                  "the training changed it, so leave it out of frozen")
    if recipe.model_mode == "eval":
        for k, v in buffers0.items():
            if v.is_floating_point() and not torch.equal(v, buffersf[k]):
                raise CheckpointError(
                    f"theta0 and thetaf disagree on BatchNorm buffer {k!r}, but the recipe's "
                    "model_mode is 'eval' (statistics never change): use model_mode 'train'")


def check_pair(recipe: Recipe, theta0: Tensors | None, thetaf: Tensors) -> None:
    """Both checkpoints fit the recipe's architecture and describe one training run."""
    if theta0 is not None:
        check_manifest(recipe, manifest_of(theta0), "theta0")
    check_manifest(recipe, manifest_of(thetaf), "thetaf")
    check_values(recipe, theta0, thetaf)
