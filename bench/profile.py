"""Cost profile: seconds per iteration and peak memory of a ResNet-18 reconstruction against
N and unrolled steps (simulated epochs), for the plain fp32 path and with checkpoint_segments
(and bf16 on a GPU), every variant as a ratio to plain fp32 measured in the same run. Each
configuration runs in a fresh process; those predicted to take longer than ``limit`` seconds
are skipped and listed."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench import memory
from bench.cases import finetune_recipe
from bench.provenance import device_slug, provenance, settled, shown_path
from bench.runner import run_subprocess
from core.errors import SimudyError

NUM_IMAGES = (10, 20, 50, 120)
EPOCHS = (1, 8, 20)
SEGMENT = 1  # checkpoint_segments: recompute one step at a time (least memory)


def variants(device: torch.device) -> dict[str, dict[str, Any]]:
    v = {"fp32": {}, f"fp32+ckpt{SEGMENT}": {"checkpoint_segments": SEGMENT}}
    if device.type == "cuda":
        v["bf16"] = {"precision": "bf16"}
        v[f"bf16+ckpt{SEGMENT}"] = {"precision": "bf16", "checkpoint_segments": SEGMENT}
    return v


def run_profile(args, device: torch.device) -> Path:
    started = provenance(device)
    recipe = finetune_recipe()
    warmup, timed = 1, (2 if device.type == "cpu" else 3)
    unit = None  # seconds per image-step (N x epochs), updated from each measurement
    rows, skipped = [], []
    grid = sorted(((n, e) for n in NUM_IMAGES for e in EPOCHS), key=lambda c: c[0] * c[1])
    with tempfile.TemporaryDirectory() as tmp:
        for n, e in grid:
            base = None
            for name, extra in variants(device).items():
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
                            "device": device.type, "rank_by_gradient_norm": False, **extra}
                try:
                    m = run_subprocess({"kind": "profile", "recipe": recipe, "settings": settings,
                                        "warmup": warmup, "timed": timed}, Path(tmp))
                except SimudyError as err:
                    skipped.append({"num_images": n, "epochs": e, "variant": name, "error": str(err)})
                    continue
                row = {"num_images": n, "epochs": e, "variant": name, **m}
                if name == "fp32":
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
                      + (f", x{row['time_ratio']:.2f} time, x{row['memory_ratio']:.2f} memory vs fp32"
                         if name != "fp32" and base else ""), file=sys.stderr, flush=True)
    result = {"case": "profile", **settled(started), "device_slug": device_slug(device),
              "recipe": recipe, "warmup_iterations": warmup, "timed_iterations": timed,
              "limit_seconds": args.profile_limit, "memory_note": memory.note(device),
              "rows": rows, "skipped": skipped,
              "command": f"simudy bench profile --out {shown_path(args.out)} --profile-limit {args.profile_limit:g}"
                         + (f" --device {args.device}" if args.device != "auto" else "")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"profile-{device_slug(device)}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"profile: {len(rows)} configurations measured, {len(skipped)} skipped -> {path}")
    return path
