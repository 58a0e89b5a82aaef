"""The benchmark harness end to end on tiny synthetic data (8x8 images, the test-only cases
``tiny``, ``tiny-unknown``, ``tiny-resnet``): result JSON, pairs grid, cache, BENCHMARKS.md."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from simudy.cli import main

REQUIRED = ("case", "device", "ssim_paper_mean", "ssim_mean", "psnr_mean", "recovered_above_0.3",
            "recovered_above_0.5", "iterations", "wall_seconds", "seconds_per_iteration",
            "peak_memory_bytes", "baseline_memory_bytes", "torch", "commit", "dirty", "command", "settings",
            "paper_ssim")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    data = d / "data"
    data.mkdir()
    for name in ("cifar10_train.npz", "cifar10_pretrain_jpeg.npz", "cifar10_test.npz"):
        np.savez(data / name, x=rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8),
                 y=np.arange(40) % 10)
    argv = ["bench", "tiny", "tiny-unknown", "--quick", "--data", str(data), "--out", str(d / "results"),
            "--cache", str(d / "cache"), "--device", "cpu"]
    assert main(argv) == 0
    return d


def test_case_result_has_every_key(bench_run):
    result = json.loads((bench_run / "results" / "tiny-quick-cpu.json").read_text())
    for key in REQUIRED:
        assert key in result, key
    assert result["case"] == "tiny" and result["quick"] is True and result["device"] == "cpu"
    assert -1 <= result["ssim_paper_mean"] <= 1 and -1 <= result["ssim_mean"] <= 1
    assert result["psnr_mean"] > 0
    assert 0 <= result["recovered_above_0.5"] <= result["recovered_above_0.3"] <= 20
    assert result["iterations"] == 5 and result["settings"]["iterations"] == 5
    assert result["wall_seconds"] > 0 and result["seconds_per_iteration"] > 0
    assert result["peak_memory_bytes"] > 10 * 2**20  # a Python process with torch
    assert result["command"].startswith("simudy bench tiny") and "--quick" in result["command"]
    assert result["target_indices"] == sorted(result["target_indices"]) and len(result["target_indices"]) == 20
    assert (bench_run / "results" / result["grid"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((bench_run / "cache").glob("thetaf-*.safetensors"))


def _run(bench_run, case):
    return main(["bench", case, "--quick", "--data", str(bench_run / "data"), "--out",
                 str(bench_run / "results"), "--cache", str(bench_run / "cache"), "--device", "cpu"])


def test_lr_search_and_gradient_norm_ranking(bench_run):
    result = json.loads((bench_run / "results" / "tiny-unknown-quick-cpu.json").read_text())
    assert [s["lr"] for s in result["lr_search"]] == [0.01, 0.005]
    assert result["simulated_lr"] in (0.01, 0.005) and result["true_lr"] == 0.01
    assert result["num_true_images"] == 10 and result["num_dummy_images"] == 12
    u = result["unknown_n"]
    counts = [g["count"] if g else 0 for g in (u["matched"], u["unmatched"])]
    assert sum(counts) == 12 and counts[0] <= 10
    assert u["auc"] is None or 0 <= u["auc"] <= 1
    assert u["paired"]["matched"]["count"] == 10 and u["paired"]["unmatched"]["count"] == 2
    assert 0 <= u["paired"]["auc"] <= 1


@pytest.mark.slow
def test_pretrained_theta0_is_cached(bench_run, capsys):
    from bench.cases import get_case
    from bench.prepare import prepare

    assert _run(bench_run, "tiny-resnet") == 0
    result = json.loads((bench_run / "results" / "tiny-resnet-quick-cpu.json").read_text())
    assert 0 <= result["theta0"]["test_accuracy"] <= 1 and result["theta0"]["num_images"] == 10
    assert result["theta0"]["train_seconds"] > 0 and result["theta0"]["device"] == "cpu"
    capsys.readouterr()
    prep = prepare(get_case("tiny-resnet").quick(), bench_run / "data", bench_run / "cache", torch.device("cpu"))
    assert "training" not in capsys.readouterr().err  # theta0 and thetaf come from the cache
    assert prep.theta0_info["key"] == result["theta0"]["key"]


@pytest.mark.slow
def test_pretrained_theta0_is_what_simudy_train_makes(bench_run, tmp_path):
    """The command the report prints for theta0 rebuilds it bit for bit with `simudy train`."""
    from core.checkpoints import load_checkpoint

    assert _run(bench_run, "tiny-resnet") == 0
    result = json.loads((bench_run / "results" / "tiny-resnet-quick-cpu.json").read_text())
    argv = result["theta0"]["command"].split()
    assert argv[:2] == ["simudy", "train"] and argv[-1] == "DIR" and "--images-per-class" in argv
    assert main(argv[1:-1] + [str(tmp_path / "by-hand")]) == 0
    by_hand = load_checkpoint(tmp_path / "by-hand" / "thetaf.safetensors")
    cached = load_checkpoint(next((bench_run / "cache").glob(f"theta0-{result['theta0']['key']}.safetensors")))
    assert by_hand.keys() == cached.keys()
    assert all(torch.equal(by_hand[k], cached[k]) for k in cached)
    summary = json.loads((tmp_path / "by-hand" / "train_summary.json").read_text())
    assert summary["test_accuracy"] == result["theta0"]["test_accuracy"]


def test_report(bench_run, tmp_path):
    target = tmp_path / "BENCHMARKS.md"
    assert main(["bench-report", "--results", str(bench_run / "results"), "--out", str(target)]) == 0
    text = target.read_text()
    assert "| tiny **quick** | simudy | cpu | 20 | 5 | 8 |" in text
    assert "simudy bench tiny" in text and "tiny-quick-cpu.png" in text
    assert "No profile yet" in text
    assert "## Grids" not in text  # only quick rows, whose images are noise
    assert "gradient-norm ranking of the 12 dummies" in text and "Estimated N" in text


def test_report_shows_the_grids_of_full_runs(bench_run, tmp_path):
    result = json.loads((bench_run / "results" / "tiny-quick-cpu.json").read_text())
    results = tmp_path / "results"
    results.mkdir()
    (results / "tiny-cpu.json").write_text(json.dumps({**result, "quick": False, "grid": "tiny-cpu.png"}))
    assert main(["bench-report", "--results", str(results), "--out", str(tmp_path / "B.md")]) == 0
    text = (tmp_path / "B.md").read_text()
    assert f"![tiny, cpu: SSIM {result['ssim_paper_mean']:.4f}](results/tiny-cpu.png)" in text


def test_bad_input(tmp_path, capsys):
    assert main(["bench", "no-such-case", "--out", str(tmp_path)]) == 2
    assert "unknown bench case" in capsys.readouterr().err
    assert main(["bench", "tiny", "--quick", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "cifar10_train.npz" in capsys.readouterr().err


def test_provenance_is_marked_dirty_when_the_code_changes_while_measuring():
    from bench.provenance import provenance, settled

    started = provenance(torch.device("cpu"))
    assert settled(started) == started  # nothing changed meanwhile
    before_a_commit = {**started, "commit": "0" * 40, "dirty": False}
    assert settled(before_a_commit) == {**before_a_commit, "dirty": True}


def test_a_case_paused_at_its_deadline_goes_on_exactly_where_it_stopped(bench_run, tmp_path):
    """The measurement process stops at its deadline keeping the engine's state, a later one
    finishes it: the same images and loss curve as one run straight through."""
    from bench.cases import get_case
    from bench.prepare import prepare
    from bench.runner import case_settings, run_subprocess

    case = get_case("tiny").quick()
    prep = prepare(case, bench_run / "data", bench_run / "cache", torch.device("cpu"))
    settings = {**case_settings(case, torch.device("cpu"), 40), "progress_every": 1}
    spec = {"kind": "case", "recipe": json.loads(prep.recipe.model_dump_json()), "settings": settings,
            "execution": {"device": "cpu"}, "theta0": str(prep.theta0_path),
            "thetaf": str(prep.thetaf_path), "truth": str(prep.truth_path)}
    straight = run_subprocess({**spec, "pairs_png": str(tmp_path / "a.png")}, tmp_path)
    state = tmp_path / "state.pt"
    paused = run_subprocess({**spec, "pairs_png": str(tmp_path / "b.png"), "state_path": str(state),
                             "pause_at_iteration": 17}, tmp_path)
    assert paused["paused"] and paused["iteration"] == 17 and state.exists()
    late = run_subprocess({**spec, "pairs_png": str(tmp_path / "c.png"), "state_path": str(tmp_path / "late.pt"),
                           "deadline": time.time() - 1}, tmp_path)  # a deadline already past: stops at once
    assert late["paused"] and late["iteration"] == 0
    resumed = run_subprocess({**spec, "pairs_png": str(tmp_path / "b.png"), "state_path": str(state)}, tmp_path)
    assert resumed["segments"] == 2 and resumed["iterations"] == 40 and not state.exists()
    assert resumed["metrics"]["ssim_paper_mean"] == straight["metrics"]["ssim_paper_mean"]
    assert resumed["final_loss"] == straight["final_loss"]
    assert [p[0] for p in resumed["ssim_curve"]] == [p[0] for p in straight["ssim_curve"]]


def test_gpu_suite_wiring_on_the_cpu(bench_run, capsys):
    """The suite runs its steps in order, writes each result, and skips what is done."""
    argv = ["bench-suite", "--quick", "--device", "cpu", "--data", str(bench_run / "data"),
            "--out", str(bench_run / "suite"), "--cache", str(bench_run / "cache"),
            "--cases", "tiny", "--only", "service-job", "tiny", "--budget-seconds", "600"]
    assert main(argv) == 0
    service = json.loads((bench_run / "suite" / "service-job-quick-cpu.json").read_text())
    assert service["status"] == "succeeded" and service["summary_device"] == "cpu"
    assert service["loss_points"] == 2 and service["ssim_paper_mean"] is not None
    tiny = json.loads((bench_run / "suite" / "tiny-quick-cpu.json").read_text())
    assert tiny["segments"] == 1 and tiny["ssim_against_iteration"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "service-job: done" in out and "tiny: done" in out and "every step is done" in out
    assert main([*argv[:-1], "1"]) == 0  # nothing left to do, whatever the budget
    assert main(["bench-suite", "--only", "nope", "--out", str(bench_run / "suite")]) == 2
