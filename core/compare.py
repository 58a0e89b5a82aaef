"""``simudy compare``: several methods on one target, one table and one figure.

A team auditing a model wants to know whether a cheaper attack already recovers its data: each
method runs through the same ``Pipeline`` as ``simudy reconstruct`` (its files go to
``OUT/<method>/``), is scored against the true images with the same evaluation, and the results
go to ``OUT/compare.md`` and ``OUT/compare.json`` (one row per method) and ``OUT/compare.png``
(each method's best pairs, reconstruction above original, one band per method).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image, ImageDraw

from core.data import load_dataset, uint8_to_unit
from core.errors import RecipeError
from core.evaluation import evaluate_npz_bytes
from core.execution import Execution
from core.grids import pairs_grid_png
from core.methods import get_method, parse_settings
from core.methods.base import MethodInputs
from core.outputs import jsonable
from core.pipeline import Monitor, Pipeline

COLUMNS = ("method", "images", "iterations", "seconds", "seconds_per_iteration", "ssim_paper_mean",
           "ssim_mean", "psnr_mean", "recovered_above_0.3", "recovered_above_0.5")
LABEL_HEIGHT = 14


@dataclass
class MethodRun:
    method: str
    summary: dict[str, Any]
    metrics: dict[str, Any]
    npz_bytes: bytes

    def row(self) -> dict[str, Any]:
        return {"method": self.method, "images": self.summary["num_images"],
                "iterations": self.summary["iterations"], "seconds": self.summary["elapsed_seconds"],
                "seconds_per_iteration": self.summary["seconds_per_iteration"],
                **{k: self.metrics[k] for k in COLUMNS[5:]}}


def settings_for(method: str, shared: dict[str, Any], per_method: dict[str, dict[str, Any]]) -> Any:
    """The shared fields (num_images, iterations, seed...) then the method's own options."""
    return parse_settings({**shared, **per_method.get(method, {}), "method": method})


def check_methods(methods: list[str], inputs: MethodInputs) -> None:
    if not methods:
        raise RecipeError("--methods: name at least one method")
    if len(set(methods)) != len(methods):
        raise RecipeError("--methods: a method is named twice")
    for name in methods:
        if get_method(name).needs_theta0 and inputs.theta0 is None:
            raise RecipeError(f"method {name} needs theta0 (the weights before training): give --theta0 "
                              "or leave it out of --methods")


def run_methods(methods: list[str], inputs: MethodInputs, truth_npz: bytes, shared: dict[str, Any],
                per_method: dict[str, dict[str, Any]], execution: Execution, out: Path,
                monitor_for: Callable[[str], Monitor | None] = lambda name: None) -> list[MethodRun]:
    """Run and score each method in turn; each one's files in ``out/<method>/``."""
    check_methods(methods, inputs)
    settings = {name: settings_for(name, shared, per_method) for name in methods}  # all valid first
    runs = []
    for name in methods:
        pipeline = Pipeline(inputs, settings[name], execution)
        lr = pipeline.search_lr() if pipeline.lr_candidates else None
        pipeline.start(lr=lr)
        if not pipeline.run(monitor_for(name)):
            raise RecipeError(f"{name} was stopped before its last iteration")
        outputs = pipeline.finalize()
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        outputs.write(folder)
        metrics, pairs_png = evaluate_npz_bytes(outputs.npz_bytes, truth_npz)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (folder / "pairs.png").write_bytes(pairs_png)
        runs.append(MethodRun(name, outputs.summary, metrics, outputs.npz_bytes))
    return runs


def table_markdown(runs: list[MethodRun]) -> str:
    rows = [r.row() for r in runs]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = []
        for key in COLUMNS:
            v = row[key]
            cells.append(f"{v:.4f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure_png(runs: list[MethodRun], truth_npz: bytes, best: int = 10) -> bytes:
    """One band per method: its ``best`` pairs (reconstruction above original, with SSIM)."""
    truth01 = uint8_to_unit(load_dataset(truth_npz)[0])
    bands = []
    for run in runs:
        recon01 = uint8_to_unit(load_dataset(run.npz_bytes)[0])
        pairs = run.metrics["pairs"][:best]
        grid = Image.open(io.BytesIO(pairs_grid_png(recon01, truth01, pairs, columns=best))).convert("RGB")
        band = Image.new("RGB", (grid.width, grid.height + LABEL_HEIGHT), "white")
        ImageDraw.Draw(band).text((2, 1), f"{run.method}: SSIM {run.metrics['ssim_paper_mean']:.3f}",
                                  fill="black")
        band.paste(grid, (0, LABEL_HEIGHT))
        bands.append(band)
    canvas = Image.new("RGB", (max(b.width for b in bands), sum(b.height for b in bands)), "white")
    y = 0
    for band in bands:
        canvas.paste(band, (0, y))
        y += band.height
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def write_comparison(runs: list[MethodRun], truth_npz: bytes, out: Path) -> None:
    (out / "compare.md").write_text(table_markdown(runs))
    (out / "compare.json").write_text(json.dumps(jsonable(
        {"rows": [r.row() for r in runs],
         "settings": {r.method: r.summary["settings"] for r in runs}}), indent=2) + "\n")
    (out / "compare.png").write_bytes(figure_png(runs, truth_npz))
