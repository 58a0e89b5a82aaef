"""Reconstruction quality: SSIM (the paper's protocol and the standard one), PSNR, pairing.

The paper's protocol (reference notes): scikit-image SSIM with ``data_range = orig.max() -
orig.min()`` on HWC float arrays in *normalised* space, 7x7 uniform window, sample covariance;
originals and reconstructions paired greedily one-to-one by that score; the reported number is
the sum of matched scores over all N originals divided by N. ``ssim_matrix`` computes exactly
scikit-image's ``structural_similarity`` for every (original, reconstruction) pair at once.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.optimize import linear_sum_assignment

from core.registry import Registry

WIN = 7
K1, K2 = 0.01, 0.03

PairScore = Callable[[np.ndarray, np.ndarray], np.ndarray]
METRICS: Registry[PairScore] = Registry("metric")


def _local_stats(a: np.ndarray) -> np.ndarray:
    return uniform_filter(a, size=(1, WIN, WIN, 1))


def ssim_one_to_many(orig: np.ndarray, recons: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM of one HWC image against M HWC images, as skimage's ``structural_similarity(orig,
    recon, data_range=data_range, channel_axis=2)`` (float64, mean over channels)."""
    x = np.broadcast_to(orig.astype(np.float64), recons.shape)
    y = recons.astype(np.float64)
    cov_norm = WIN * WIN / (WIN * WIN - 1.0)
    ux, uy = _local_stats(x), _local_stats(y)
    uxx, uyy, uxy = _local_stats(x * x), _local_stats(y * y), _local_stats(x * y)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    pad = (WIN - 1) // 2
    return s[:, pad:-pad, pad:-pad, :].mean(axis=(1, 2, 3))


@METRICS.register("ssim_paper")
def ssim_paper_matrix(originals: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """SSIM as the paper scores it: in normalised space, data range of each original.

    (N, M) for every pair; inputs HWC float in normalised space."""
    return np.stack([ssim_one_to_many(o, recons, float(o.max() - o.min()) or 1.0) for o in originals])


@METRICS.register("ssim")
def ssim_matrix(originals: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """Standard SSIM on images in [0, 1].

    (N, M) for every pair; inputs HWC float in [0, 1], data_range 1."""
    return np.stack([ssim_one_to_many(o, recons, 1.0) for o in originals])


@METRICS.register("psnr")
def psnr_matrix(originals: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """PSNR in dB on images in [0, 1].

    (N, M) for every pair."""
    diff = originals[:, None].astype(np.float64) - recons[None].astype(np.float64)
    mse = (diff ** 2).mean(axis=(2, 3, 4))
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


def greedy_pairs(scores: np.ndarray) -> list[tuple[int, int]]:
    """Repeatedly take the best remaining (original, reconstruction) pair (the paper's pairing)."""
    order = np.dstack(np.unravel_index(np.argsort(-scores, axis=None, kind="stable"), scores.shape))[0]
    used_o, used_r, pairs = set(), set(), []
    for i, j in order:
        if i not in used_o and j not in used_r:
            used_o.add(int(i)); used_r.add(int(j)); pairs.append((int(i), int(j)))
            if len(pairs) == min(scores.shape):
                break
    return pairs


def optimal_pairs(scores: np.ndarray) -> list[tuple[int, int]]:
    """Hungarian pairing maximising the total score."""
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return sorted(((int(i), int(j)) for i, j in zip(rows, cols)), key=lambda p: -scores[p])


PAIRINGS = {"greedy": greedy_pairs, "optimal": optimal_pairs}
