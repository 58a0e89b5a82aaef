"""Cost profile: seconds per iteration and peak memory of a reconstruction against N and
unrolled steps (simulated epochs), every variant as a ratio to the first one measured in the
same run. ``resnet18`` (the default): plain fp32, checkpoint_segments (and bf16 on a GPU).
``mlp``: the MLP 3072-1000-1000-10 with the generic engine (today's path, the reference), with
checkpointing, the exact low-rank engine, and the two approximate gradients; ``mlp-momentum``:
the exact engines on the same MLP trained with momentum and weight decay. Each
configuration runs in a fresh process; those predicted to take longer than ``limit`` seconds
are skipped and listed."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from bench import memory
from bench.cases import MOMENTUM_MLP, finetune_recipe, mlp_recipe
from bench.provenance import device_slug, provenance, settled, shown_path
from bench.runner import run_subprocess
from core.errors import SimudyError

NUM_IMAGES = (10, 20, 50, 120)
EPOCHS = (1, 8, 20)
SEGMENT = 1  # checkpoint_segments: recompute one step at a time (least memory)


MLP_GRID = ((20, 1), (20, 5), (20, 10), (20, 20), (100, 4), (100, 10), (100, 20))
WINDOW = 5  # truncation_window of the truncated variant


def variants(device: torch.device) -> dict[str, dict[str, Any]]:
    """Execution settings of each ResNet-18 variant, by name."""
    v = {"fp32": {}, f"fp32+ckpt{SEGMENT}": {"checkpoint_segments": SEGMENT}}
    if device.type == "cuda":
        v["bf16"] = {"precision": "bf16"}
        v[f"bf16+ckpt{SEGMENT}"] = {"precision": "bf16", "checkpoint_segments": SEGMENT}
    return v


def mlp_variants() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """(execution, settings) of each MLP variant, by name; the first is the reference."""
    generic = {"fast_paths": False}
    return {"generic": (generic, {}),
            f"generic+ckpt{SEGMENT}": ({**generic, "checkpoint_segments": SEGMENT}, {}),
            "low-rank": ({}, {}),
            f"truncated{WINDOW}": ({}, {"gradient": "truncated", "truncation_window": WINDOW}),
            "per_step": ({}, {"gradient": "per_step"})}


def momentum_mlp_variants() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The exact engines only: generic (the reference) and low-rank, on a momentum recipe."""
    v = mlp_variants()
    return {k: v[k] for k in ("generic", f"generic+ckpt{SEGMENT}", "low-rank")}


def resnet18_plan(device: torch.device):
    grid = sorted(((n, e) for n in NUM_IMAGES for e in EPOCHS), key=lambda c: c[0] * c[1])
    return finetune_recipe(), grid, {k: (v, {}) for k, v in variants(device).items()}, "ResNet-18"


def mlp_plan(device: torch.device):
    return mlp_recipe(), list(MLP_GRID), mlp_variants(), "MLP 3072-1000-1000-10"


def momentum_mlp_plan(device: torch.device):
    return (MOMENTUM_MLP, list(MLP_GRID), momentum_mlp_variants(),
            "MLP 3072-1000-1000-10 trained by SGD with momentum 0.9 and weight decay 5e-4")


# What each profile kind measures: (recipe, grid of (N, epochs), {variant: (execution,
# settings)}, model description), by kind.
PROFILE_KINDS: dict[str, Callable[[torch.device], tuple[dict, list, dict, str]]] = {
    "resnet18": resnet18_plan, "mlp": mlp_plan, "mlp-momentum": momentum_mlp_plan}


def run_profile(args, device: torch.device, *, deadline: float | None = None) -> Path | None:
    """The profile's JSON, or None when ``deadline`` (epoch seconds) came first (it is then
    measured again in full next time: each configuration takes a fresh process anyway)."""
    started = provenance(device)
    kind = getattr(args, "profile_kind", "resnet18")
    recipe, grid, plan_variants, model_name = PROFILE_KINDS[kind](device)
    warmup, timed = 1, (2 if device.type == "cpu" else 3)
    unit = None  # seconds per image-step (N x epochs), updated from each measurement
    rows, skipped = [], []
    reference = next(iter(plan_variants))
    threads = (getattr(args, "threads", None) or [None])[0]
    with tempfile.TemporaryDirectory() as tmp:
        for n, e in grid:
            if deadline is not None and time.time() > deadline:
                print("[profile] out of time; measure it again later", file=sys.stderr)
                return None
            base = None
            for name, (extra, extra_settings) in plan_variants.items():
                label = f"N={n} epochs={e} {name}"
                factor = 1.5 if "ckpt" in name else 1.0
                predicted = unit * n * e * (warmup + timed) * factor if unit else None
                if predicted is not None and predicted > args.profile_limit:
                    skipped.append({"num_images": n, "epochs": e, "variant": name,
                                    "predicted_seconds": predicted})
                    print(f"[profile] skip {label}: predicted {predicted:.0f}s > {args.profile_limit:.0f}s",
                          file=sys.stderr)
                    continue
                settings = {"num_images": n, "simulated_epochs": e, "iterations": 10**6,
                            "rank_by_gradient_norm": False, **extra_settings}
                try:
                    m = run_subprocess({"kind": "profile", "recipe": recipe, "settings": settings,
                                        "execution": {"device": device.type, "threads": threads, **extra},
                                        "warmup": warmup, "timed": timed}, Path(tmp))
                except SimudyError as err:
                    skipped.append({"num_images": n, "epochs": e, "variant": name, "error": str(err)})
                    continue
                row = {"num_images": n, "epochs": e, "variant": name, **m}
                if name == reference:
                    base = row
                    unit = m["seconds_per_iteration"] / (n * e)
                if base:
                    row["time_ratio"] = m["seconds_per_iteration"] / base["seconds_per_iteration"]
                    row["memory_ratio"] = m["peak_memory_bytes"] / base["peak_memory_bytes"]
                    work, base_work = (m["peak_memory_bytes"] - m["baseline_memory_bytes"],
                                       base["peak_memory_bytes"] - base["baseline_memory_bytes"])
                    row["working_memory_ratio"] = work / base_work if base_work > 0 else None
                rows.append(row)
                print(f"[profile] {label}: {m['seconds_per_iteration']:.3f} s/iter, peak "
                      f"{m['peak_memory_bytes'] / 2**30:.2f} GiB"
                      + (f", x{row['time_ratio']:.2f} time, x{row['memory_ratio']:.2f} memory vs {reference}"
                         if row is not base else ""), file=sys.stderr, flush=True)
    result = {"case": "profile", "kind": kind, "model": model_name, **settled(started),
              "device_slug": device_slug(device), "recipe": recipe, "threads": threads, "warmup_iterations": warmup, "timed_iterations": timed,
              "limit_seconds": args.profile_limit, "memory_note": memory.note(device),
              "rows": rows, "skipped": skipped,
              "command": f"simudy bench profile --out {shown_path(args.out)} --profile-limit {args.profile_limit:g}"
                         + (f" --profile-kind {kind}" if kind != "resnet18" else "")
                         + (f" --threads {threads}" if threads else "")
                         + (f" --device {args.device}" if args.device != "auto" else "")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (f"profile-{device_slug(device)}.json" if kind == "resnet18"
                  else f"profile-{kind}-{device_slug(device)}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"profile: {len(rows)} configurations measured, {len(skipped)} skipped -> {path}")
    return path
