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


def _execution(spec: dict[str, Any]):  # noqa: ANN202
    from core.execution import Execution

    return Execution(**spec.get("execution", {}))


class Checkpointed:
    """A case's measurement that can stop before ``deadline`` (epoch seconds; or at
    ``pause_at_iteration``) and go on in a
    later process: the pipeline's exact state in ``state_path``, and beside it (``.json``) the
    wall time and peak memory so far, the lr candidates already scored and the SSIM-against-
    iteration points. Without a state path it runs to the end in one go."""

    SAVE_EVERY = 120.0  # seconds: a recent state on disk even if the process is killed

    def __init__(self, spec: dict[str, Any]) -> None:
        self.state_path = Path(spec["state_path"]) if spec.get("state_path") else None
        self.deadline = spec.get("deadline")
        # a deadline in iterations instead of seconds: deterministic (tests, splitting by hand)
        self.pause_at_iteration = spec.get("pause_at_iteration")
        self.sidecar = self.state_path.with_suffix(".json") if self.state_path else None
        self.so_far: dict[str, Any] = {"wall_seconds": 0.0, "peak_memory_bytes": 0, "segments": 1,
                                       "lr_scores": [], "ssim_curve": []}
        if self.sidecar and self.sidecar.exists():
            self.so_far = json.loads(self.sidecar.read_text())
            self.so_far["segments"] += 1
        self.started = time.perf_counter()
        self.last_save = time.monotonic()

    def wall_seconds(self) -> float:
        return self.so_far["wall_seconds"] + time.perf_counter() - self.started

    def out_of_time(self, iteration: int = 0) -> bool:
        if self.pause_at_iteration is not None and iteration >= self.pause_at_iteration:
            return True
        return self.deadline is not None and time.time() > self.deadline

    def state(self) -> bytes | None:
        return self.state_path.read_bytes() if self.state_path and self.state_path.exists() else None

    def save(self, pipeline: Any, peak: int) -> None:
        """The state as it is now (a run stopped at a consistent point), and the record."""
        if self.state_path is None:
            return
        if pipeline.method is not None:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_bytes(pipeline.state_bytes())
            tmp.replace(self.state_path)
        record = {**self.so_far, "wall_seconds": self.wall_seconds(),
                  "peak_memory_bytes": max(self.so_far["peak_memory_bytes"], peak)}
        self.sidecar.write_text(json.dumps(record))
        self.last_save = time.monotonic()

    def due(self) -> bool:
        return self.state_path is not None and time.monotonic() - self.last_save > self.SAVE_EVERY

    def clear(self) -> None:
        for path in (self.state_path, self.sidecar):
            if path is not None:
                path.unlink(missing_ok=True)


CURVE_POINTS = 10  # SSIM against iteration: this many points per run


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    from core import lr_search
    from core.checkpoints import check_pair, load_checkpoint
    from core.data import load_dataset, uint8_to_unit
    from core.evaluation import evaluate, evaluate_npz_bytes
    from core.methods import parse_settings
    from core.methods.base import MethodInputs
    from core.pipeline import Pipeline
    from core.recipe import parse_recipe

    recipe, settings = parse_recipe(spec["recipe"]), parse_settings(spec["settings"])
    execution = _execution(spec)
    device = execution.torch_device()
    theta0, thetaf = load_checkpoint(spec["theta0"]), load_checkpoint(spec["thetaf"])
    check_pair(recipe, theta0, thetaf)
    truth01 = uint8_to_unit(load_dataset(spec["truth"])[0])
    every = max(1, settings.iterations // 10)
    curve_every = max(1, settings.iterations // CURVE_POINTS)
    run = Checkpointed(spec)
    baseline = memory.start(device)
    pipeline = Pipeline(MethodInputs(recipe, thetaf, theta0), settings, execution)

    class Monitor:
        def on_progress(self, p) -> None:  # noqa: ANN001
            if p.iteration % every == 0 or p.iteration == p.iterations:
                metrics = " ".join(f"{k} {v:.4f}" for k, v in p.metrics.items())
                print(f"[bench] iter {p.iteration}/{p.iterations} {metrics} {p.elapsed_seconds:.0f}s",
                      file=sys.stderr, flush=True)
            if p.iteration % curve_every == 0:  # the [0, 1] images now, scored as the paper does
                now = evaluate(pipeline.method.preview_images(), truth01, recipe.normalize.mean,
                               recipe.normalize.std)
                run.so_far["ssim_curve"].append([p.iteration, now["ssim_paper_mean"]])

        def should_stop(self) -> bool:
            if run.due():
                run.save(pipeline, memory.peak(device))
            return run.out_of_time(pipeline.method.iteration)

    state = run.state()
    if state is None and pipeline.lr_candidates:  # scored candidates survive a pause
        scored = {s["lr"]: s for s in run.so_far["lr_scores"]}
        for lr in pipeline.lr_candidates:
            if lr in scored:
                continue
            if run.out_of_time():
                run.save(pipeline, memory.peak(device))
                return {"paused": True, "iteration": 0}
            scored[lr] = pipeline.score_candidate(lr)
            print(f"[bench] lr {lr:.4g}: loss {scored[lr]['score']:.4f}", file=sys.stderr, flush=True)
            run.so_far["lr_scores"] = list(scored.values())
        scores = [scored[lr] for lr in pipeline.lr_candidates]
        best = lr_search.best_index([s["score"] for s in scores])
        pipeline.start(lr=scores[best]["lr"], lr_scores=scores)
    else:
        pipeline.start(state=state)
    if not pipeline.run(Monitor()):
        run.save(pipeline, memory.peak(device))
        return {"paused": True, "iteration": pipeline.method.iteration}
    outputs = pipeline.finalize()
    _sync(device)
    wall, peak = run.wall_seconds(), max(run.so_far["peak_memory_bytes"], memory.peak(device))
    run.clear()
    metrics, pairs_png = evaluate_npz_bytes(outputs.npz_bytes, Path(spec["truth"]).read_bytes())
    Path(spec["pairs_png"]).write_bytes(pairs_png)
    s = outputs.summary
    return {"metrics": metrics, "wall_seconds": wall, "run_seconds": s["elapsed_seconds"],
            "segments": run.so_far["segments"], "ssim_curve": run.so_far["ssim_curve"],
            "seconds_per_iteration": s["seconds_per_iteration"], "iterations": s["iterations"],
            "simulated_steps": s.get("simulated_steps"), "simulated_lr": s.get("simulated_lr"),
            "lr_search": s["lr_search"], "ranking": s.get("ranking"), "final_loss": s["final_loss"],
            "final_cosine": s.get("final_cosine"), "peak_memory_bytes": peak,
            "baseline_memory_bytes": baseline}


def run_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``timed`` image updates after ``warmup`` on random weights (the cost of an iteration
    does not depend on the weights' values)."""
    from core.architectures import model_for_recipe
    from core.methods import get_method, parse_settings
    from core.methods.base import MethodInputs
    from core.recipe import parse_recipe

    recipe, settings = parse_recipe(spec["recipe"]), parse_settings(spec["settings"])
    execution = _execution(spec)
    device = execution.torch_device()
    torch.manual_seed(0)
    theta0 = model_for_recipe(recipe).state_dict()
    thetaf = {k: v + 1e-3 * torch.randn_like(v) if v.is_floating_point() else v for k, v in theta0.items()}
    recon = get_method(settings.method)(MethodInputs(recipe, thetaf, theta0), settings, execution)
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
            "simulated_steps": recon.estimate_cost(recipe, settings).unrolled_steps,
            "peak_memory_bytes": memory.peak(device), "baseline_memory_bytes": baseline}


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
