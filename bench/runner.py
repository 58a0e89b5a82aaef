"""One case end to end: prepare theta0/thetaf, reconstruct and score in a fresh process,
write ``<case>[-quick]-<device>.json`` and its pairs grid PNG."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import memory
from bench.cases import Case
from bench.prepare import content_key, prepare
from bench.provenance import device_slug, provenance, settled, shown_path
from core.errors import ReconstructionFailed
from core.job_settings import LrSearch
from core.methods import parse_settings


def case_settings(case: Case, device: torch.device, iterations: int | None,
                  quick: bool = False) -> dict[str, Any]:
    if iterations is None:
        iterations = case.cpu_iterations if device.type == "cpu" and case.cpu_iterations else case.iterations
    settings: dict[str, Any] = {
        "method": case.method, "num_images": case.num_dummy or case.num_true, "iterations": iterations,
        "seed": case.seed, "progress_every": 10, **case.extra_settings}
    if case.method == "simudy":
        settings.update(simulated_epochs=case.simulated_epochs, rank_by_gradient_norm=case.unknown_n)
    if case.lr_search:
        settings["lr_search"] = LrSearch().model_dump()
        if quick:  # a short search: three candidates, scored by the loss after one update
            settings["lr_search"].update(candidates=list(case.quick_lr_candidates), updates=2, score_window=1)
    return json.loads(parse_settings(settings).model_dump_json())


def run_subprocess(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    spec_path, out_path = workdir / "spec.json", workdir / "result.json"
    spec_path.write_text(json.dumps(spec))
    r = subprocess.run([sys.executable, "-m", "bench.measure", str(spec_path), str(out_path)])
    if r.returncode != 0 or not out_path.exists():
        raise ReconstructionFailed(f"measurement process failed (exit {r.returncode}); see the log above")
    return json.loads(out_path.read_text())


def _separation(norms: np.ndarray, matched: np.ndarray) -> dict[str, Any]:
    """ROC AUC of the norm as a score for ``matched``, and the norms of both groups."""
    pos, neg = norms[matched], norms[~matched]
    auc = None
    if len(pos) and len(neg):
        auc = float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                    / (len(pos) * len(neg)))

    def stats(v: np.ndarray) -> dict | None:
        return {"count": int(len(v)), "mean": float(v.mean()), "min": float(v.min()),
                "max": float(v.max())} if len(v) else None

    return {"auc": auc, "matched": stats(pos), "unmatched": stats(neg)}


def ranking_separation(ranking: dict[str, Any], pairs: list[dict[str, Any]], threshold: float = 0.3) -> dict:
    """How well the gradient norm tells the dummies that reconstruct a real image from the
    surplus ones, for two meanings of "matched": paired with an original at paper SSIM above
    ``threshold``, or paired at all by the greedy one-to-one pairing (N of the dummies)."""
    norms = np.asarray(ranking["gradient_norms"])
    good, paired = np.zeros(len(norms), dtype=bool), np.zeros(len(norms), dtype=bool)
    for p in pairs:
        paired[p["reconstruction"]] = True
        good[p["reconstruction"]] |= p["ssim_paper"] > threshold
    return {"matched_threshold": threshold, **_separation(norms, good),
            "paired": _separation(norms, paired),
            "estimated_num_images": ranking["estimated_num_images"],
            "paper": {"matched_mean": 1.55, "matched_range": [1.12, 1.95],
                      "unmatched_mean": 0.55, "unmatched_range": [0.22, 0.84]}}


def shrink_png(path: Path) -> None:
    """Keep committed grids small: a 256-colour palette PNG."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=256)
    small.save(path, format="PNG", optimize=True)


def command_line(case: Case, args) -> str:
    parts = ["simudy", "bench", case.name, "--data", shown_path(args.data), "--out", shown_path(args.out)]
    if args.quick:
        parts.append("--quick")
    if args.iterations:
        parts += ["--iterations", str(args.iterations)]
    if args.device != "auto":
        parts += ["--device", args.device]
    return " ".join(parts)


def run_case(case: Case, args, device: torch.device, cache: Path, *, deadline: float | None = None
             ) -> Path | None:
    """Measure ``case``; its result JSON, or None when ``deadline`` (epoch seconds) stopped it
    first: its state is then in ``cache`` and the next call with the same case goes on."""
    started = provenance(device)
    run_case_def = case.quick() if args.quick else case
    settings = case_settings(run_case_def, device, args.iterations, args.quick)
    t0 = time.perf_counter()
    prep = prepare(run_case_def, Path(args.data), cache, device)
    prepare_seconds = time.perf_counter() - t0
    stem = f"{case.name}{'-quick' if args.quick else ''}-{device_slug(device)}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = cache / "states" / f"{stem}-{content_key(settings=settings, thetaf=prep.thetaf_path.name)}.pt"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        measured = run_subprocess({
            "kind": "case", "recipe": json.loads(prep.recipe.model_dump_json()), "settings": settings,
            "execution": {"device": device.type},
            "theta0": str(prep.theta0_path), "thetaf": str(prep.thetaf_path), "truth": str(prep.truth_path),
            "pairs_png": str(out / f"{stem}.png"), "state_path": str(state_path), "deadline": deadline},
            Path(tmp))
    if measured.get("paused"):
        print(f"{case.name}: paused at iteration {measured['iteration']} (state kept; run again to go on)")
        return None
    shrink_png(out / f"{stem}.png")
    m = measured["metrics"]
    result = {
        "case": case.name, "method": case.method, "quick": bool(args.quick), "description": case.description,
        **settled(started), "device_slug": device_slug(device),
        "ssim_paper_mean": m["ssim_paper_mean"], "ssim_mean": m["ssim_mean"], "psnr_mean": m["psnr_mean"],
        "recovered_above_0.3": m["recovered_above_0.3"], "recovered_above_0.5": m["recovered_above_0.5"],
        "num_true_images": case.num_true, "num_dummy_images": m["num_reconstructions"],
        "iterations": measured["iterations"], "simulated_steps": measured["simulated_steps"],
        "wall_seconds": measured["wall_seconds"], "seconds_per_iteration": measured["seconds_per_iteration"],
        "segments": measured["segments"], "ssim_against_iteration": measured["ssim_curve"],
        "projected_hours_30k": measured["seconds_per_iteration"] * 30_000 / 3600,
        "prepare_seconds": prepare_seconds,
        "peak_memory_bytes": measured["peak_memory_bytes"],
        "baseline_memory_bytes": measured["baseline_memory_bytes"],
        "reconstruction_memory_bytes": measured["peak_memory_bytes"] - measured["baseline_memory_bytes"],
        "memory_note": memory.note(device),
        "paper_ssim": case.paper_ssim, "paper_note": case.paper_note,
        "paper_cost_4090": dict(zip(("gigabytes", "hours"), case.paper_cost)) if case.paper_cost else None,
        "command": command_line(case, args), "settings": settings,
        "recipe": json.loads(prep.recipe.model_dump_json()), "theta0": prep.theta0_info,
        "target_indices": prep.indices, "final_loss": measured["final_loss"],
        "final_cosine": measured["final_cosine"], "simulated_lr": measured["simulated_lr"],
        "true_lr": case.recipe["optimizer"]["lr"], "lr_search": measured["lr_search"],
        "real_recipe": case.recipe if case.declared_recipe else None,
        "top_k_ssim_paper_mean": m["top_k_ssim_paper_mean"], "grid": f"{stem}.png",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if case.unknown_n and measured["ranking"]:
        result["unknown_n"] = ranking_separation(measured["ranking"], m["pairs"])
    path = out / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{case.name}{' (quick)' if args.quick else ''}: ssim_paper_mean {result['ssim_paper_mean']:.4f} "
          f"(paper {case.paper_ssim}), {result['seconds_per_iteration']:.3f} s/iter, "
          f"peak {result['peak_memory_bytes'] / 2**30:.2f} GiB -> {path}")
    return path
