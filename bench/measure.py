"""Runs in a fresh process (``python -m bench.measure SPEC.json RESULT.json``) so its peak
memory belongs to one measurement. ``kind: case`` reconstructs and scores one case;
``kind: profile`` times a few iterations of one configuration."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import memory
from core.errors import SimudyError


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    from core.checkpoints import check_pair, load_checkpoint
    from core.device import resolve_device
    from core.evaluation import evaluate_npz_bytes
    from core.pipeline import reconstruct
    from core.recipe import parse_recipe
    from core.settings import parse_settings

    recipe, settings = parse_recipe(spec["recipe"]), parse_settings(spec["settings"])
    device = resolve_device(settings.device)
    theta0, thetaf = load_checkpoint(spec["theta0"]), load_checkpoint(spec["thetaf"])
    check_pair(recipe, theta0, thetaf)
    every = max(1, settings.iterations // 10)

    def progress(p) -> None:
        if p.iteration % every == 0 or p.iteration == p.iterations:
            print(f"[bench] iter {p.iteration}/{p.iterations} loss {p.loss:.4f} cos {p.cosine:.4f} "
                  f"{p.elapsed_seconds:.0f}s", file=sys.stderr, flush=True)

    def candidate(c) -> None:
        print(f"[bench] lr {c['lr']:.4g}: loss {c['score']:.4f}", file=sys.stderr, flush=True)

    baseline = memory.start(device)
    t0 = time.perf_counter()
    recon, outputs = reconstruct(theta0, thetaf, recipe, settings, on_progress=progress,
                                 on_candidate=candidate)
    _sync(device)
    wall = time.perf_counter() - t0
    peak = memory.peak(device)
    metrics, pairs_png = evaluate_npz_bytes(outputs.npz_bytes, Path(spec["truth"]).read_bytes())
    Path(spec["pairs_png"]).write_bytes(pairs_png)
    s = outputs.summary
    return {"metrics": metrics, "wall_seconds": wall, "run_seconds": s["elapsed_seconds"],
            "seconds_per_iteration": s["seconds_per_iteration"], "iterations": s["iterations"],
            "simulated_steps": s["simulated_steps"], "simulated_lr": s["simulated_lr"],
            "lr_search": s["lr_search"], "ranking": s["ranking"], "final_loss": s["final_loss"],
            "final_cosine": s["final_cosine"], "peak_memory_bytes": peak, "baseline_memory_bytes": baseline}


def run_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``timed`` image updates after ``warmup`` on random weights (the cost of an iteration
    does not depend on the weights' values)."""
    from core.device import resolve_device
    from core.methods import get_method
    from core.recipe import parse_recipe
    from core.settings import parse_settings
    from core.simudy import model_for_recipe

    recipe, settings = parse_recipe(spec["recipe"]), parse_settings(spec["settings"])
    device = resolve_device(settings.device)
    torch.manual_seed(0)
    theta0 = model_for_recipe(recipe).state_dict()
    thetaf = {k: v + 1e-3 * torch.randn_like(v) if v.is_floating_point() else v for k, v in theta0.items()}
    recon = get_method(settings.method)(theta0, thetaf, recipe, settings, device=device)
    baseline = memory.start(device)
    for _ in range(spec["warmup"]):
        recon.step()
    times = []
    for _ in range(spec["timed"]):
        _sync(device)
        t0 = time.perf_counter()
        recon.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"seconds_per_iteration": float(np.median(times)), "times": times,
            "simulated_steps": recon.plan.num_steps, "peak_memory_bytes": memory.peak(device),
            "baseline_memory_bytes": baseline}


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    try:
        result = {"case": run_case, "profile": run_profile}[spec["kind"]](spec)
    except SimudyError as err:
        print(f"[bench] error: {err}", file=sys.stderr)
        return 2
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
