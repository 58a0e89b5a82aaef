"""Score reconstructions against the true training images (audit mode).

The paper-protocol SSIM compares the raw optimised images (``x_normalized`` in
``reconstruction.npz``, unclamped, as the reference code does) with the normalised originals;
the standard SSIM and PSNR compare the saved [0, 1] images. Pairs are chosen once, by the
paper-protocol SSIM (greedy by default, or optimal), and every
score is reported for those pairs. Means are over all N originals: an original left without a
reconstruction counts 0 (SSIM) as in the paper.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from core.data import inspect_npz, load_dataset, uint8_to_unit, unit_to_normalized
from core.errors import DatasetError
from core.metrics import METRICS, PAIRING_METRIC, PAIRINGS
from core.recipe import CIFAR10_MEAN, CIFAR10_STD

THRESHOLDS = (0.3, 0.5)
TOP_K = (10, 20, 40)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).double().numpy()


def evaluate(recon01: torch.Tensor, truth01: torch.Tensor, mean, std, *,
             pairing: str = "greedy", recon_normalized: torch.Tensor | None = None) -> dict[str, Any]:
    """``recon01`` (M,C,H,W) and ``truth01`` (N,C,H,W) in [0, 1]; mean/std of the model's
    normalisation. The paper scores the raw optimised images in normalised space: pass them as
    ``recon_normalized`` (unclamped); without them the [0, 1] images are normalised instead.
    Every registered metric is reported for the pairs chosen by ``PAIRING_METRIC``."""
    if recon01.shape[1:] != truth01.shape[1:]:
        raise DatasetError(f"reconstructions are {list(recon01.shape[1:])} but the true images are "
                           f"{list(truth01.shape[1:])} (C, H, W)")
    if pairing not in PAIRINGS:
        raise DatasetError(f"unknown pairing {pairing!r} ({' or '.join(PAIRINGS.names())})")
    if recon_normalized is None:
        recon_normalized = unit_to_normalized(recon01, mean, std)
    elif recon_normalized.shape != recon01.shape:
        raise DatasetError("x_normalized and x of the reconstruction disagree in shape")
    images = {"normalized": (_hwc(unit_to_normalized(truth01, mean, std)), _hwc(recon_normalized)),
              "unit": (_hwc(truth01), _hwc(recon01))}
    pairing_metric = METRICS.get(PAIRING_METRIC)
    full = pairing_metric.score(*images[pairing_metric.space])
    pairs = PAIRINGS.get(pairing)(full)
    rows = []
    for i, j in pairs:
        row: dict[str, Any] = {"original": i, "reconstruction": j}
        for name in METRICS.names():
            metric = METRICS.get(name)
            t, r = images[metric.space]
            row[name] = float(full[i, j]) if name == PAIRING_METRIC else \
                float(metric.score(t[i:i + 1], r[j:j + 1])[0, 0])
        rows.append(row)
    rows.sort(key=lambda p: -p[PAIRING_METRIC])
    n = len(truth01)
    metrics: dict[str, Any] = {}
    for name in METRICS.names():
        metric = METRICS.get(name)
        values = [row[name] for row in rows]
        if metric.unpaired is None:
            metrics[f"{name}_mean"] = float(np.mean(values)) if values else 0.0
        else:
            metrics[f"{name}_mean"] = (sum(values) + metric.unpaired * (n - len(values))) / n
    metrics.update({"pairing": pairing, "pairing_metric": PAIRING_METRIC, "num_originals": n,
                    "num_reconstructions": len(recon01)})
    scores = [row[PAIRING_METRIC] for row in rows] + [0.0] * (n - len(rows))
    for th in THRESHOLDS:
        metrics[f"recovered_above_{th}"] = sum(s > th for s in scores)
    metrics["top_k_ssim_paper_mean"] = {str(k): float(np.mean(scores[:k])) for k in TOP_K if k <= n}
    metrics["pairs"] = rows
    return metrics


def scoring_work(recon_npz: bytes, truth_npz: bytes) -> int:
    """Pixel pairs the scoring compares (originals x reconstructions x values per image), read
    from the headers: the cost of ``evaluate_npz_bytes`` grows with it."""
    shapes = []
    for data, name in ((recon_npz, "reconstruction"), (truth_npz, "truth")):
        x = inspect_npz(data, name).get("x")
        if x is None or len(x[0]) != 4:
            raise DatasetError(f"{name} must hold 'x': uint8 images of shape (N, H, W, C)")
        shapes.append(x[0])
    (m, *image), (n, *_) = shapes
    return n * m * math.prod(image)


def evaluate_npz_bytes(recon_npz: bytes, truth_npz: bytes, *, pairing: str = "greedy",
                       max_work: int | None = None) -> tuple[dict, bytes]:
    """Score a ``reconstruction.npz`` against a truth npz; return (metrics, pairs grid PNG).
    Normalisation comes from the reconstruction file (``mean``/``std``), else CIFAR-10's. With
    ``max_work``, more pixel pairs than that (``scoring_work``) are refused before any work."""
    from core.grids import pairs_grid_png

    if max_work is not None and (work := scoring_work(recon_npz, truth_npz)) > max_work:
        raise DatasetError(f"scoring these images compares {work:,} pixel pairs, over the limit of "
                           f"{max_work:,}: send fewer true images, or score locally with simudy evaluate")
    rx, _ = load_dataset(recon_npz, name="reconstruction")
    tx, _ = load_dataset(truth_npz, name="truth")
    if tx.shape[1:] != rx.shape[1:]:
        raise DatasetError(f"truth: x must be uint8 (N, H, W, C) with images of {list(rx.shape[1:])} "
                           f"like the reconstruction's, found {list(tx.shape)}")
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
