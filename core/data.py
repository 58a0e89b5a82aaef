"""Image datasets as npz files: ``x`` uint8 (N,H,W,C), ``y`` integer labels (as in
``shared/data``), and conversions to and from the model's normalised space."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from core.errors import DatasetError
from core.recipe import Recipe


def load_dataset(source: str | Path | bytes) -> tuple[np.ndarray, np.ndarray]:
    """Return (x uint8 NHWC, y int64). Never unpickles (``allow_pickle=False``)."""
    name = "dataset" if isinstance(source, bytes) else Path(source).name
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
    except (ValueError, OSError, EOFError) as err:
        raise DatasetError(f"{name} is not a readable npz file: {err}") from None
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
        raise DatasetError(f"{name}: images are {list(x.shape[1:])} (H, W, C), the recipe's "
                           f"image_shape needs {[h, w, c]}")


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
