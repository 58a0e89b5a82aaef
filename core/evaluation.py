"""Score reconstructions against the true training images (audit mode).

The paper-protocol SSIM compares the raw optimised images (``x_normalized`` in
``reconstruction.npz``, unclamped, as the reference code does) with the normalised originals;
the standard SSIM and PSNR compare the saved [0, 1] images. Pairs are chosen once, by the
paper-protocol SSIM (greedy by default, or optimal), and every
score is reported for those pairs. Means are over all N originals: an original left without a
reconstruction counts 0 (SSIM) as in the paper.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.data import load_dataset, uint8_to_unit, unit_to_normalized
from core.errors import DatasetError
from core.metrics import PAIRINGS, psnr_matrix, ssim_matrix, ssim_paper_matrix
from core.recipe import CIFAR10_MEAN, CIFAR10_STD

THRESHOLDS = (0.3, 0.5)
TOP_K = (10, 20, 40)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).double().numpy()


def evaluate(recon01: torch.Tensor, truth01: torch.Tensor, mean, std, *,
             pairing: str = "greedy", recon_normalized: torch.Tensor | None = None) -> dict[str, Any]:
    """``recon01`` (M,C,H,W) and ``truth01`` (N,C,H,W) in [0, 1]; mean/std of the model's
    normalisation. The paper scores the raw optimised images in normalised space: pass them as
    ``recon_normalized`` (unclamped); without them the [0, 1] images are normalised instead."""
    if recon01.shape[1:] != truth01.shape[1:]:
        raise DatasetError(f"reconstructions are {list(recon01.shape[1:])} but the true images are "
                           f"{list(truth01.shape[1:])} (C, H, W)")
    if pairing not in PAIRINGS:
        raise DatasetError(f"unknown pairing {pairing!r} (greedy or optimal)")
    if recon_normalized is None:
        recon_normalized = unit_to_normalized(recon01, mean, std)
    elif recon_normalized.shape != recon01.shape:
        raise DatasetError("x_normalized and x of the reconstruction disagree in shape")
    paper = ssim_paper_matrix(_hwc(unit_to_normalized(truth01, mean, std)), _hwc(recon_normalized))
    t, r = _hwc(truth01), _hwc(recon01)
    pairs = PAIRINGS[pairing](paper)
    std_ssim = {(i, j): float(ssim_matrix(t[i:i + 1], r[j:j + 1])[0, 0]) for i, j in pairs}
    psnr = {(i, j): float(psnr_matrix(t[i:i + 1], r[j:j + 1])[0, 0]) for i, j in pairs}
    n = len(truth01)
    rows = sorted(({"original": i, "reconstruction": j, "ssim_paper": float(paper[i, j]),
                    "ssim": std_ssim[(i, j)], "psnr": psnr[(i, j)]} for i, j in pairs),
                  key=lambda p: -p["ssim_paper"])
    scores = [p["ssim_paper"] for p in rows] + [0.0] * (n - len(rows))
    metrics: dict[str, Any] = {
        "ssim_paper_mean": sum(scores) / n,
        "ssim_mean": sum(std_ssim.values()) / n,
        "psnr_mean": float(np.mean(list(psnr.values()))) if psnr else 0.0,
        "pairing": pairing,
        "num_originals": n,
        "num_reconstructions": len(recon01),
    }
    for th in THRESHOLDS:
        metrics[f"recovered_above_{th}"] = sum(s > th for s in scores)
    metrics["top_k_ssim_paper_mean"] = {str(k): float(np.mean(scores[:k])) for k in TOP_K if k <= n}
    metrics["pairs"] = rows
    return metrics


def evaluate_npz_bytes(recon_npz: bytes, truth_npz: bytes, *, pairing: str = "greedy") -> tuple[dict, bytes]:
    """Score a ``reconstruction.npz`` against a truth npz; return (metrics, pairs grid PNG).
    Normalisation comes from the reconstruction file (``mean``/``std``), else CIFAR-10's."""
    from core.grids import pairs_grid_png

    rx, _ = load_dataset(recon_npz)
    tx, _ = load_dataset(truth_npz)
    mean, std, raw = _normalized_space(recon_npz)
    recon01, truth01 = uint8_to_unit(rx), uint8_to_unit(tx)
    metrics = evaluate(recon01, truth01, mean, std, pairing=pairing, recon_normalized=raw)
    return metrics, pairs_grid_png(recon01, truth01, metrics["pairs"])


def _normalized_space(npz: bytes) -> tuple[list[float], list[float], torch.Tensor | None]:
    """Normalisation (``mean``/``std``, else CIFAR-10's) and the raw ``x_normalized`` images
    of a reconstruction file, when it holds them."""
    import io

    with np.load(io.BytesIO(npz), allow_pickle=False) as z:
        mean, std = (z["mean"].tolist(), z["std"].tolist()) if "mean" in z.files and "std" in z.files \
            else (list(CIFAR10_MEAN), list(CIFAR10_STD))
        raw = torch.from_numpy(z["x_normalized"]).double() if "x_normalized" in z.files else None
    if raw is not None and not torch.isfinite(raw).all():
        raise DatasetError("x_normalized of the reconstruction holds NaN or Inf")
    return mean, std, raw
