"""Reconstruction quality: SSIM (the paper's protocol and the standard one), PSNR, pairing.

Each metric is one ``Metric`` entry in ``METRICS`` and each pairing one function in
``PAIRINGS``; ``core.evaluation`` reports every registered metric for the chosen pairs, so a
new entry appears in ``simudy evaluate`` and the service's metrics without other changes.

The paper's protocol (reference notes): scikit-image SSIM with ``data_range = orig.max() -
orig.min()`` on HWC float arrays in *normalised* space, 7x7 uniform window, sample covariance;
originals and reconstructions paired greedily one-to-one by that score; the reported number is
the sum of matched scores over all N originals divided by N. ``ssim_matrix`` computes exactly
scikit-image's ``structural_similarity`` for every (original, reconstruction) pair at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.optimize import linear_sum_assignment

from core.registry import Registry, summary

WIN = 7
K1, K2 = 0.01, 0.03

PairScore = Callable[[np.ndarray, np.ndarray], np.ndarray]
Pairing = Callable[[np.ndarray], list[tuple[int, int]]]


@dataclass(frozen=True)
class Metric:
    """A score of (original, reconstruction) pairs. ``space``: the images it compares, in the
    model's normalised input space or in [0, 1]. ``unpaired``: what an original left without a
    reconstruction counts in the mean (0 for SSIM, as the paper), or None to average over the
    pairs only. ``score`` maps (N originals, M reconstructions), HWC float64, to (N, M)."""

    name: str
    space: Literal["normalized", "unit"]
    score: PairScore
    unpaired: float | None = 0.0

    @property
    def description(self) -> str:
        return summary(self.score)


METRICS: Registry[Metric] = Registry("metric")
PAIRINGS: Registry[Pairing] = Registry("pairing")
PAIRING_METRIC = "ssim_paper"  # pairs are chosen by this metric, as in the paper


def register_metric(name: str, space: Literal["normalized", "unit"], *,
                    unpaired: float | None = 0.0) -> Callable[[PairScore], PairScore]:
    def decorator(fn: PairScore) -> PairScore:
        METRICS.register(name)(Metric(name, space, fn, unpaired))
        return fn
    return decorator


def _local_stats(a: np.ndarray) -> np.ndarray:
    return uniform_filter(a, size=(1, WIN, WIN, 1))


def ssim_pairs(originals: np.ndarray, recons: np.ndarray, data_ranges: np.ndarray) -> np.ndarray:
    """(N, M) SSIM of every (original, reconstruction) pair, each as skimage's
    ``structural_similarity(orig, recon, data_range=data_ranges[i], channel_axis=2)``
    (float64, mean over channels). Each image's local mean and variance are filtered once;
    only the cross term is filtered per pair."""
    x, y = originals.astype(np.float64), recons.astype(np.float64)
    cov_norm = WIN * WIN / (WIN * WIN - 1.0)
    ux, uy = _local_stats(x), _local_stats(y)
    vx = cov_norm * (_local_stats(x * x) - ux * ux)
    vy = cov_norm * (_local_stats(y * y) - uy * uy)
    pad = (WIN - 1) // 2
    inner = (slice(None), slice(pad, -pad), slice(pad, -pad), slice(None))
    out = np.empty((len(x), len(y)))
    for i in range(len(x)):
        vxy = cov_norm * (_local_stats(x[i][None] * y) - ux[i][None] * uy)
        c1, c2 = (K1 * data_ranges[i]) ** 2, (K2 * data_ranges[i]) ** 2
        s = ((2 * ux[i][None] * uy + c1) * (2 * vxy + c2)) / ((ux[i][None] ** 2 + uy ** 2 + c1) * (vx[i][None] + vy + c2))
        out[i] = s[inner].mean(axis=(1, 2, 3))
    return out


@register_metric("ssim_paper", "normalized")
def ssim_paper_matrix(originals: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """SSIM as the paper scores it: in normalised space, data range of each original.

    (N, M) for every pair; inputs HWC float in normalised space."""
    ranges = np.ptp(originals.reshape(len(originals), -1), axis=1) if len(originals) else np.zeros(0)
    return ssim_pairs(originals, recons, np.where(ranges > 0, ranges, 1.0))


@register_metric("ssim", "unit")
def ssim_matrix(originals: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """Standard SSIM on images in [0, 1].

    (N, M) for every pair; inputs HWC float in [0, 1], data_range 1."""
    return ssim_pairs(originals, recons, np.ones(len(originals)))


@register_metric("psnr", "unit", unpaired=None)
def psnr_matrix(originals: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """PSNR in dB on images in [0, 1].

    (N, M) for every pair."""
    diff = originals[:, None].astype(np.float64) - recons[None].astype(np.float64)
    mse = (diff ** 2).mean(axis=(2, 3, 4))
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


@PAIRINGS.register("greedy")
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


@PAIRINGS.register("optimal")
def optimal_pairs(scores: np.ndarray) -> list[tuple[int, int]]:
    """Hungarian pairing maximising the total score."""
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return sorted(((int(i), int(j)) for i, j in zip(rows, cols)), key=lambda p: -scores[p])

