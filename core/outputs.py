"""The artifacts of a finished reconstruction, shared by the CLI and the service:
``reconstruction.npz`` (``x`` uint8 NHWC, ``y``, ``mean``, ``std``, and the ranking when
computed), ``grid.png``, ``loss.csv`` and a JSON-able summary."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data import save_npz_bytes, unit_to_uint8
from core.grids import reconstruction_grid_png
from core.ranking import rank_images, total_gradient_norms


@dataclass
class ReconstructionOutputs:
    npz_bytes: bytes
    grid_png: bytes
    loss_csv: str
    summary: dict[str, Any]


def loss_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["iteration", "loss", "cosine", "tv"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def finalize(recon, *, lr_search: list[dict[str, Any]] | None = None) -> ReconstructionOutputs:
    """Package a finished (or stopped) reconstruction. Ranks images by total gradient norm when
    the settings ask for it (unknown dataset size)."""
    result = recon.result()
    ranking = None
    if recon.settings.rank_by_gradient_norm:
        norms = total_gradient_norms(recon.plan, recon.state0, recon.images, recon.labels,
                                     recon.clips_at(recon.iteration))
        ranking = rank_images(norms)
    arrays = {"x": unit_to_uint8(result.images), "y": result.labels.numpy().astype(np.int64),
              "mean": np.asarray(recon.recipe.normalize.mean, dtype=np.float32),
              "std": np.asarray(recon.recipe.normalize.std, dtype=np.float32),
              # the raw optimised images (NCHW, normalised space, unclamped): the paper scores these
              "x_normalized": result.normalized.numpy().astype(np.float32)}
    captions = None
    if ranking:
        arrays["gradient_norm"] = np.asarray(ranking["gradient_norms"], dtype=np.float32)
        arrays["significant"] = np.asarray(ranking["significant"], dtype=bool)
        captions = [("" if s else "x ") + f"{v:.2g}" for v, s in
                    zip(ranking["gradient_norms"], ranking["significant"])]
    last = result.history[-1] if result.history else {}
    summary = {
        "method": recon.settings.method,
        "num_images": len(result.labels),
        "iterations": result.iterations,
        "elapsed_seconds": result.elapsed_seconds,
        "seconds_per_iteration": result.elapsed_seconds / max(result.iterations, 1),
        "simulated_lr": result.simulated_lr,
        "simulated_steps": recon.plan.num_steps,
        "final_loss": last.get("loss"),
        "final_cosine": last.get("cosine"),
        "device": str(recon.device),
        "labels": result.labels.tolist(),
        "lr_search": [{"lr": s["lr"], "score": s["score"]} for s in lr_search] if lr_search else None,
        "ranking": ranking,
    }
    return ReconstructionOutputs(save_npz_bytes(**arrays),
                                 reconstruction_grid_png(result.images, captions=captions),
                                 loss_csv(result.history), summary)
