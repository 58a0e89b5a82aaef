"""The files of a finished reconstruction, the same for every method and for the CLI and the
service: ``reconstruction.npz`` (``x`` uint8 NHWC, ``y``, ``mean``, ``std``, ``x_normalized``
and the method's own arrays), ``grid.png``, ``loss.csv`` (every step's metrics) and
``summary.json``."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data import save_npz_bytes, unit_to_uint8
from core.grids import reconstruction_grid_png
from core.methods.base import MethodResult
from core.recipe import Recipe

FILES = ("reconstruction.npz", "grid.png", "loss.csv", "summary.json")


@dataclass
class ReconstructionOutputs:
    npz_bytes: bytes
    grid_png: bytes
    loss_csv: str
    summary: dict[str, Any]

    def summary_json(self) -> str:
        return json.dumps(jsonable(self.summary), indent=2) + "\n"

    def files(self) -> dict[str, bytes]:
        """Each output file's name and bytes, as ``write`` and the service store them."""
        return {"reconstruction.npz": self.npz_bytes, "grid.png": self.grid_png,
                "loss.csv": self.loss_csv.encode(), "summary.json": self.summary_json().encode()}

    def write(self, directory: Path) -> None:
        for name, data in self.files().items():
            (directory / name).write_bytes(data)


def loss_csv(history: list[dict[str, float]], metric_names: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["iteration", *metric_names], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def package(result: MethodResult, *, recipe: Recipe, settings: Any, metric_names: tuple[str, ...],
            device: str, precision: str, lr_search: list[dict[str, Any]] | None = None
            ) -> ReconstructionOutputs:
    """Turn a method's result into the output files."""
    arrays = {"x": unit_to_uint8(result.images), "y": result.labels.numpy().astype(np.int64),
              "mean": np.asarray(recipe.normalize.mean, dtype=np.float32),
              "std": np.asarray(recipe.normalize.std, dtype=np.float32),
              # the raw optimised images (NCHW, normalised space, unclamped): the paper scores these
              "x_normalized": result.normalized.numpy().astype(np.float32),
              **result.arrays}
    last = result.history[-1] if result.history else {}
    summary = {
        "method": settings.method,
        "num_images": len(result.labels),
        "iterations": result.iterations,
        "elapsed_seconds": result.elapsed_seconds,
        "seconds_per_iteration": result.elapsed_seconds / max(result.iterations, 1),
        **{f"final_{name}": last.get(name) for name in metric_names},
        "device": device,
        "precision": precision,
        "labels": result.labels.tolist(),
        "lr_search": [{"lr": s["lr"], "score": s["score"]} for s in lr_search] if lr_search else None,
        **result.summary,
        "settings": json.loads(settings.model_dump_json()),
    }
    return ReconstructionOutputs(save_npz_bytes(**arrays),
                                 reconstruction_grid_png(result.images, captions=result.captions),
                                 loss_csv(result.history, metric_names), jsonable(summary))


def jsonable(obj: Any) -> Any:
    """JSON-safe for files and both databases: numpy values as lists, NaN/inf as null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)
