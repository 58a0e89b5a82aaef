"""SSIM under the paper's protocol equals scikit-image's on known arrays; pairing and means."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from core.data import unit_to_normalized
from core.evaluation import evaluate
from core.metrics import greedy_pairs, optimal_pairs, psnr_matrix, ssim_paper_matrix
from core.recipe import CIFAR10_MEAN, CIFAR10_STD


def test_ssim_matrix_equals_scikit_image():
    rng = np.random.default_rng(0)
    originals = rng.normal(size=(3, 32, 32, 3))
    recons = originals[[2, 0, 1]] + rng.normal(scale=0.7, size=(3, 32, 32, 3))
    ours = ssim_paper_matrix(originals, recons)
    for i in range(3):
        for j in range(3):
            o = originals[i]
            ref = structural_similarity(o, recons[j], data_range=o.max() - o.min(), channel_axis=2)
            assert ours[i, j] == pytest.approx(ref, abs=1e-10)
    assert list(ours.argmax(axis=1)) == [1, 2, 0]


def test_greedy_pairing_takes_the_best_pair_first():
    scores = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert greedy_pairs(scores) == [(0, 0), (1, 1)]  # greedy total 1.0
    assert sorted(optimal_pairs(scores)) == [(0, 1), (1, 0)]  # optimal total 1.65


def test_psnr_of_known_difference():
    a = np.zeros((1, 4, 4, 3))
    b = np.full((1, 4, 4, 3), 0.1)
    assert psnr_matrix(a, b)[0, 0] == pytest.approx(20.0)


def test_identical_images_score_one_and_all_are_recovered():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    m = evaluate(x[[3, 1, 0, 2]], x, CIFAR10_MEAN, CIFAR10_STD)
    assert m["ssim_paper_mean"] == pytest.approx(1.0)
    assert m["ssim_mean"] == pytest.approx(1.0)
    assert m["recovered_above_0.5"] == 4
    assert {(p["original"], p["reconstruction"]) for p in m["pairs"]} == {(0, 2), (1, 1), (2, 3), (3, 0)}


def test_paper_mean_is_over_all_originals_and_in_normalised_space():
    g = torch.Generator().manual_seed(1)
    truth = torch.rand(4, 3, 16, 16, generator=g)
    recon = (truth[:2] + 0.05 * torch.randn(2, 3, 16, 16, generator=g)).clamp(0, 1)
    m = evaluate(recon, truth, CIFAR10_MEAN, CIFAR10_STD)
    assert len(m["pairs"]) == 2
    hwc = lambda t: unit_to_normalized(t, CIFAR10_MEAN, CIFAR10_STD).permute(0, 2, 3, 1).double().numpy()
    expected = [structural_similarity(hwc(truth)[i], hwc(recon)[i],
                                      data_range=hwc(truth)[i].max() - hwc(truth)[i].min(), channel_axis=2)
                for i in range(2)]
    assert m["ssim_paper_mean"] == pytest.approx(sum(expected) / 4)
    assert m["pairs"][0]["ssim_paper"] >= m["pairs"][1]["ssim_paper"]


def test_paper_ssim_uses_the_raw_normalised_images_when_given():
    g = torch.Generator().manual_seed(3)
    truth = torch.rand(3, 3, 16, 16, generator=g)
    raw = unit_to_normalized(truth, CIFAR10_MEAN, CIFAR10_STD) * 1.5  # out of the [0, 1] range
    clamped = (raw * torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
               + torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)).clamp(0, 1)
    with_raw = evaluate(clamped, truth, CIFAR10_MEAN, CIFAR10_STD, recon_normalized=raw.double())
    without = evaluate(clamped, truth, CIFAR10_MEAN, CIFAR10_STD)
    o = unit_to_normalized(truth, CIFAR10_MEAN, CIFAR10_STD)[0].permute(1, 2, 0).double().numpy()
    expected = structural_similarity(o, raw[0].permute(1, 2, 0).double().numpy(),
                                     data_range=o.max() - o.min(), channel_axis=2)
    assert [p for p in with_raw["pairs"] if p["original"] == 0][0]["ssim_paper"] == pytest.approx(expected)
    assert with_raw["ssim_paper_mean"] != pytest.approx(without["ssim_paper_mean"])
    assert with_raw["ssim_mean"] == pytest.approx(without["ssim_mean"])  # standard SSIM: [0, 1] images


def test_a_registered_metric_appears_in_the_evaluation():
    """The metric registry drives evaluate: one entry is one more reported score."""
    from core.metrics import METRICS, register_metric

    @register_metric("mean_abs_error", "unit", unpaired=None)
    def mae(originals, recons):
        """Mean absolute error on [0, 1] images."""
        return np.abs(originals[:, None] - recons[None]).mean(axis=(2, 3, 4))

    try:
        x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        m = evaluate(x, x, CIFAR10_MEAN, CIFAR10_STD)
        assert m["mean_abs_error_mean"] == 0.0
        assert all(p["mean_abs_error"] == 0.0 for p in m["pairs"])
    finally:
        METRICS._entries.pop("mean_abs_error")
