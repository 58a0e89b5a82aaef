"""Bench cases name a method: a baseline case reconstructs the same target (same cached theta0
and thetaf) as the SimuDy case it derives from, and the report shows each row's method."""

from __future__ import annotations

import json

import numpy as np

from bench.cases import get_case
from bench.suite import CASES as SUITE_CASES
from simudy.cli import main


def test_a_baseline_case_runs_on_the_same_target_and_the_report_names_its_method(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("cifar10_train.npz", "cifar10_pretrain_jpeg.npz", "cifar10_test.npz"):
        np.savez(data / name, x=rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8), y=np.arange(40) % 10)
    common = ["--quick", "--data", str(data), "--out", str(tmp_path / "results"), "--cache",
              str(tmp_path / "cache"), "--device", "cpu"]
    assert main(["bench", "tiny", "tiny-kkt", *common]) == 0
    simudy = json.loads((tmp_path / "results/tiny-quick-cpu.json").read_text())
    kkt = json.loads((tmp_path / "results/tiny-kkt-quick-cpu.json").read_text())
    assert simudy["method"] == "simudy" and kkt["method"] == "kkt"
    assert kkt["settings"]["method"] == "kkt" and "simulated_epochs" not in kkt["settings"]
    assert kkt["num_true_images"] == 20 and kkt["num_dummy_images"] == 40  # 2N candidates
    assert kkt["target_indices"] == simudy["target_indices"]
    assert len(list((tmp_path / "cache").glob("thetaf-*.safetensors"))) == 1  # one target, shared
    assert main(["bench-report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "B.md")]) == 0
    report = (tmp_path / "B.md").read_text()
    assert "| case | method |" in report and "| tiny-kkt **quick** | kkt |" in report


def test_the_paper_baseline_rows_are_registered_and_the_gpu_suite_runs_the_resnet_ones():
    for base, kkt_paper, ntk_paper in (("mlp-100", 0.143, 0.138), ("binary-mlp-20", 0.228, 0.354),
                                       ("resnet18-50", 0.030, 0.077)):
        of = get_case(base)
        for method, paper in (("kkt", kkt_paper), ("ntk", ntk_paper)):
            case = get_case(f"{base}-{method}")
            assert case.method == method and case.paper_ssim == paper
            assert (case.recipe, case.per_class, case.binary_per_group, case.seed, case.pretrain) == \
                (of.recipe, of.per_class, of.binary_per_group, of.seed, of.pretrain)
    assert get_case("binary-mlp-20").recipe["loss"] == "logistic"
    assert {"resnet18-50-kkt", "resnet18-50-ntk"} <= set(SUITE_CASES)
