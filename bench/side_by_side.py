"""``simudy bench side-by-side``: the authors' code and simudy on the same checkpoints, the same
machine and thread count, alternating in one run.

Each round starts one fresh process per contestant (so its peak memory is its own), runs a
warm-up update and then ``updates`` timed image updates; rounds alternate the contestants so a
slow patch of a shared machine hits all of them. Reported: median seconds per image update
over all timed updates, peak RSS and the RSS just before the first update, and each
contestant's ratio to the authors'. Contestants: ``authors`` (their ``recons.py``, patched
only to run headless on the CPU, see bench/authors.py), ``simudy`` (the default execution:
fast paths on) and ``simudy-generic`` (the generic engine, as before the low-rank path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import memory
from bench.cases import get_case
from bench.prepare import prepare
from bench.provenance import provenance, settled, shown_path
from core.errors import SimudyError

CONTESTANTS = ("authors", "simudy", "simudy-generic")


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    baseline_before = memory.current_rss_bytes()
    if spec["who"] == "authors":
        from bench.authors import AuthorsRun
        run = AuthorsRun(Path(spec["authors_dir"]), spec["authors_argv"], spec["seed"])
        step = run.step
    else:
        from core.checkpoints import load_checkpoint
        from core.execution import Execution
        from core.methods import get_method, parse_settings
        from core.methods.base import MethodInputs
        from core.recipe import parse_recipe

        recipe, settings = parse_recipe(spec["recipe"]), parse_settings(spec["settings"])
        execution = Execution(device="cpu", threads=spec["threads"],
                              fast_paths=spec["who"] == "simudy")
        execution.torch_device()
        method = get_method(settings.method)(
            MethodInputs(recipe, load_checkpoint(spec["thetaf"]), load_checkpoint(spec["theta0"])),
            settings, execution)
        engine = "low-rank MLP" if getattr(method, "lowrank", None) is not None else "generic"

        def step() -> float:
            return float(method.step()[0])
    baseline = memory.current_rss_bytes()
    losses = [step()]  # warm-up
    times = []
    for _ in range(spec["updates"]):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    return {"times": times, "losses": losses, "peak_memory_bytes": memory.peak_rss_bytes(),
            "baseline_memory_bytes": baseline, "import_memory_bytes": baseline_before,
            "threads": torch.get_num_threads(),
            "engine": "authors" if spec["who"] == "authors" else engine}


def _spawn(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    spec_path, out_path = workdir / "spec.json", workdir / "out.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    repo = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "bench.side_by_side", str(spec_path), str(out_path)],
                       env={**env, "PYTHONPATH": str(repo)}, cwd=repo)
    if r.returncode != 0 or not out_path.exists():
        raise SimudyError(f"side-by-side worker {spec['who']} failed (exit {r.returncode})")
    out = json.loads(out_path.read_text())
    out_path.unlink()
    return out


def run_side_by_side(args, device: torch.device) -> Path:
    from bench.authors import argv, prepare_checkout, write_checkpoints
    from bench.runner import case_settings
    from core.checkpoints import load_checkpoint

    if device.type != "cpu":
        raise SimudyError("side-by-side runs on the CPU (the authors' code is patched for it)")
    started = provenance(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dest = prepare_checkout(Path(args.authors), tmp)
        for name in args.case:
            case = get_case(name)
            if case.recipe["architecture"] != "mlp" or case.binary_per_group \
                    or case.recipe["optimizer"].get("name", "sgd") != "sgd":
                raise SimudyError(f"{name}: side-by-side supports the 10-class MLP cases trained with "
                                  "SGD (the authors' code simulates SGD only)")
            prep = prepare(case, Path(args.data), Path(args.cache), device)
            recipe = json.loads(prep.recipe.model_dump_json())
            settings = case_settings(case, device, iterations=10**6)
            settings["rank_by_gradient_norm"] = False
            width = recipe["arch_options"]["hidden"][0]
            lr, bs = recipe["optimizer"]["lr"], recipe["batch_size"]
            write_checkpoints(dest, load_checkpoint(prep.theta0_path), load_checkpoint(prep.thetaf_path),
                              case.num_true, bs, lr)
            for threads in args.threads or [1]:
                base = {"threads": threads, "updates": args.updates, "seed": args.seed,
                        "recipe": recipe, "settings": settings, "theta0": str(prep.theta0_path),
                        "thetaf": str(prep.thetaf_path), "authors_dir": str(dest),
                        "authors_argv": argv(case.per_class, width, bs, lr, recipe["epochs"])}
                runs: dict[str, list[dict]] = {w: [] for w in args.contestants}
                for r in range(args.rounds):
                    order = list(args.contestants) if r % 2 == 0 else list(reversed(args.contestants))
                    for who in order:
                        m = _spawn({**base, "who": who}, tmp)
                        runs[who].append(m)
                        print(f"[side-by-side] {name} threads={threads} round {r + 1}: {who} "
                              f"{np.median(m['times']):.3f} s/update, peak "
                              f"{m['peak_memory_bytes'] / 2**30:.2f} GiB", file=sys.stderr, flush=True)
                rows = {}
                for who, ms in runs.items():
                    times = [t for m in ms for t in m["times"]]
                    rows[who] = {"seconds_per_update": float(np.median(times)),
                                 "min_seconds": float(np.min(times)), "max_seconds": float(np.max(times)),
                                 "timed_updates": len(times),
                                 "peak_memory_bytes": int(max(m["peak_memory_bytes"] for m in ms)),
                                 "baseline_memory_bytes": int(max(m["baseline_memory_bytes"] for m in ms)),
                                 "engine": ms[0]["engine"], "threads": ms[0]["threads"],
                                 "first_losses": ms[0]["losses"][:3]}
                if "authors" in rows:
                    ref = rows["authors"]["seconds_per_update"]
                    for who, row in rows.items():
                        row["speedup_vs_authors"] = ref / row["seconds_per_update"]
                        # per round (neighbouring processes share the machine's conditions)
                        row["speedup_per_round"] = [float(np.median(a["times"]) / np.median(m["times"]))
                                                    for a, m in zip(runs["authors"], runs[who])]
                        row["memory_ratio_vs_authors"] = row["peak_memory_bytes"] / rows["authors"]["peak_memory_bytes"]
                results.append({"case": name, "threads": threads, "num_images": case.num_true,
                                "unrolled_steps": recipe["epochs"] * -(-case.num_true // bs), "rows": rows})
                summary = ", ".join(f"{w} {r['seconds_per_update']:.3f} s" + (
                    f" (x{r['speedup_vs_authors']:.2f})" if "speedup_vs_authors" in r else "")
                    for w, r in rows.items())
                print(f"side-by-side {name}, {threads} thread(s): {summary}", flush=True)
    command = (f"simudy bench side-by-side --authors PATH --case {' '.join(args.case)} --threads "
               f"{' '.join(map(str, args.threads or [1]))} --updates {args.updates} --rounds {args.rounds}"
               f" --out {shown_path(out)}")
    result = {"case": "side-by-side", **settled(started), "memory_note": memory.CPU_NOTE,
              "authors_commit_note": "BlueBlood6/SimuDy recons.py, patched headless (bench/authors.py)",
              "updates_per_round": args.updates, "rounds": args.rounds, "seed": args.seed,
              "results": results, "command": command,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = out / f"side-by-side-{'-'.join(args.case)}-cpu.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {path}")
    return path


def main(argv_: list[str]) -> int:
    spec = json.loads(Path(argv_[0]).read_text())
    Path(argv_[1]).write_text(json.dumps(_worker(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
