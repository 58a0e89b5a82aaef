"""Image datasets as npz files: ``x`` uint8 (N,H,W,C), ``y`` integer labels (as in
``shared/data``), and conversions to and from the model's normalised space.

``inspect_npz`` reads only the array headers (shape, dtype) of an npz, so the size of what a
file would unpack to is known, and bounded, before anything is decompressed."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from core.errors import DatasetError
from core.recipe import Recipe


MAX_NPY_HEADER = 10_000


def inspect_npz(data: bytes, name: str = "dataset") -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's (shape, dtype) from its header, decompressing nothing else; refuses what
    is not an npz or whose members do not hold the size their headers declare."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise DatasetError(f"{name} is not a readable npz file (an .npz made by numpy.savez)") from None
    if len(infos) > 64:
        raise DatasetError(f"{name} holds {len(infos)} arrays; an image set has x and y")
    arrays = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue
        try:
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(f, max_header_size=MAX_NPY_HEADER)
                header_end = f.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError):
            raise DatasetError(f"{name}: {info.filename} is not a readable array") from None
        if dtype.hasobject:
            raise DatasetError(f"{name}: {info.filename} holds Python objects (never loaded)")
        if info.file_size != header_end + math.prod(shape) * dtype.itemsize:
            raise DatasetError(f"{name}: {info.filename} does not hold the data its header declares")
        arrays[info.filename[:-4]] = (tuple(shape), dtype)
    return arrays


def load_dataset(source: str | Path | bytes, *, max_images: int | None = None,
                 name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (x uint8 NHWC, y int64). Never unpickles (``allow_pickle=False``). From bytes,
    the headers are checked first, and more than ``max_images`` images are refused before
    anything is decompressed. Messages call it ``name`` (default: the file name, or "dataset")."""
    name = name or ("dataset" if isinstance(source, bytes) else Path(source).name)
    if isinstance(source, bytes):
        headers = inspect_npz(source, name)
        if "x" in headers and len(headers["x"][0]) == 4 and max_images is not None \
                and headers["x"][0][0] > max_images:
            raise DatasetError(f"{name} holds {headers['x'][0][0]} images, over the limit of {max_images}")
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                     allow_pickle=False) as z:
            if "x" not in z.files or "y" not in z.files:
                raise DatasetError(f"{name} must hold arrays 'x' and 'y' (has {', '.join(z.files) or 'none'})")
            x, y = z["x"], z["y"]
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{name}: no such file") from None
    except AttributeError:  # a bare .npy: np.load gave an array, not an archive
        raise DatasetError(f"{name} is not an npz file (a bare .npy array?): save x and y with "
                           "numpy.savez") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):  # numpy's text may advise allow_pickle
        raise DatasetError(f"{name} is not a readable npz file: it must be an npz with arrays x and y "
                           "(numpy.savez)") from None
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DatasetError(f"{name}: 'x' must be uint8 of shape (N, H, W, C), got {x.dtype} {list(x.shape)}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{name}: 'y' must be {len(x)} integer labels, got {y.dtype} {list(y.shape)}")
    return x, y.astype(np.int64)


def first_per_class(y: np.ndarray, per_class: int, offset: int = 0,
                    num_classes: int | None = None) -> np.ndarray:
    """Indices of images ``offset .. offset+per_class-1`` of every class, in dataset order
    (the paper's targets: the first K images of each class)."""
    classes = range(num_classes) if num_classes else np.unique(y)
    picked = []
    for c in classes:
        idx = np.flatnonzero(y == c)[offset:offset + per_class]
        if len(idx) < per_class:
            raise DatasetError(f"class {c} has only {len(idx)} images after offset {offset}, "
                               f"{per_class} were asked for")
        picked.append(idx)
    return np.sort(np.concatenate(picked))


def check_images_fit(x: np.ndarray, recipe: Recipe, name: str = "dataset") -> None:
    c, h, w = recipe.image_shape
    if tuple(x.shape[1:]) != (h, w, c):
        raise DatasetError(f"{name}: x must be uint8 (N, H, W, C) = (N, {h}, {w}, {c}) for the recipe's "
                           f"image_shape {[c, h, w]} (C, H, W), found {list(x.shape)}")


def unit_to_normalized(x01: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=x01.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x01.dtype).view(1, -1, 1, 1)
    return (x01 - m) / s


def uint8_to_unit(x: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255.0


def to_normalized(x: np.ndarray, recipe: Recipe) -> torch.Tensor:
    return unit_to_normalized(uint8_to_unit(x), recipe.normalize.mean, recipe.normalize.std)


def unit_to_uint8(x01: torch.Tensor) -> np.ndarray:
    """float NCHW in [0, 1] -> uint8 NHWC (rounded)."""
    return (x01.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
