"""``simudy bench-suite``: every GPU measurement in one fixed order, resumable, so each
stretch of lent GPU time goes straight on where the last one stopped.

A step is done when its result JSON is in ``--out``; a run skips done steps, works through the
rest until ``--budget-seconds`` is nearly spent, and stops cleanly: a case in the middle of its
run keeps its exact engine state in the cache (``bench.measure.Checkpointed``) and goes on from
there next time. On a CPU the same command checks the wiring (``--quick`` shrinks every case).

Steps, in order: the engine's exactness tests on the device; one job through the service (API,
worker, embedded database and broker) on the device; the cases, most telling first; the cost
profile.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.cases import get_case
from bench.provenance import REPO, device_slug, provenance, settled

EXACTNESS_TESTS = ("tests/core/test_simulation.py", "tests/core/test_reconstruction.py")
CASES = ("resnet18-20", "mlp-100", "binary-mlp-20", "resnet18-120", "resnet18-40-unknown-n",
         "resnet18-60-unknown-lr", "resnet18-50", "resnet18-50-ntk", "resnet18-50-kkt")
MARGIN_SECONDS = 45  # what a step needs to wrap up after the deadline


@dataclass(frozen=True)
class Step:
    name: str
    result: Callable[[Path, str, bool], Path]  # (out, device slug, quick) -> its result JSON
    run: Callable[..., bool]  # (args, device, deadline) -> done (False: paused, go on next time)


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[suite] wrote {path}", flush=True)


def run_exactness_tests(args, device: torch.device, deadline: float) -> bool:  # noqa: ANN001
    """The engine's exactness tests with ``SIMUDY_TEST_DEVICE`` set to the device."""
    started = provenance(device)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *EXACTNESS_TESTS],
                       cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "SIMUDY_TEST_DEVICE": device.type},
                       timeout=max(60.0, deadline - time.time()))
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|errors?|skipped)", tail)}
    _write(_result_tests(Path(args.out), device_slug(device), args.quick),
           {"case": "exactness-tests", **settled(started), "device_slug": device_slug(device),
            "tests": list(EXACTNESS_TESTS), "summary": tail, "counts": counts,
            "passed": r.returncode == 0, "wall_seconds": time.perf_counter() - t0,
            "output_tail": (r.stdout + r.stderr)[-4000:],
            "command": f"SIMUDY_TEST_DEVICE={device.type} python -m pytest {' '.join(EXACTNESS_TESTS)}"})
    return True


def _result_tests(out: Path, slug: str, quick: bool) -> Path:
    return out / f"exactness-tests-{slug}.json"


def run_service_job(args, device: torch.device, deadline: float) -> bool:  # noqa: ANN001
    """One job through ``simudy serve`` and ``simudy worker`` with ``SIMUDY_DEVICE`` set to the
    device, on the embedded database, broker and storage (no server needed): its status,
    progress and results as a client sees them."""
    from bench.service_job import run_job_through_service

    started = provenance(device)
    with tempfile.TemporaryDirectory(prefix="simudy-suite-") as tmp:
        result = run_job_through_service(Path(tmp), device=device.type, quick=args.quick,
                                         timeout=max(60.0, deadline - time.time()))
    _write(_result_service(Path(args.out), device_slug(device), args.quick),
           {"case": "service-job", **settled(started), "device_slug": device_slug(device), **result})
    return True


def _result_service(out: Path, slug: str, quick: bool) -> Path:
    return out / f"service-job{'-quick' if quick else ''}-{slug}.json"


def _case_step(name: str) -> Step:
    def result(out: Path, slug: str, quick: bool) -> Path:
        return out / f"{name}{'-quick' if quick else ''}-{slug}.json"

    def run(args, device: torch.device, deadline: float) -> bool:  # noqa: ANN001
        from bench.runner import run_case

        return run_case(get_case(name), args, device, Path(args.cache), deadline=deadline) is not None

    return Step(name, result, run)


def _profile_step() -> Step:
    def result(out: Path, slug: str, quick: bool) -> Path:
        return out / f"profile-{slug}.json"

    def run(args, device: torch.device, deadline: float) -> bool:  # noqa: ANN001
        from bench.profile import run_profile

        return run_profile(args, device, deadline=deadline) is not None

    return Step("profile", result, run)


def steps(cases: tuple[str, ...] | list[str] = CASES) -> list[Step]:
    return [Step("exactness-tests", _result_tests, run_exactness_tests),
            Step("service-job", _result_service, run_service_job),
            *(_case_step(name) for name in cases),
            _profile_step()]


def run_suite(args, device: torch.device) -> int:  # noqa: ANN001
    """Run the steps not done yet, in order, within the budget. Exit status 0 when every step
    is done, 3 when the budget ran out first (run again to go on)."""
    deadline = time.time() + args.budget_seconds - MARGIN_SECONDS
    slug = device_slug(device)
    chosen = [s for s in steps(args.cases or CASES) if not args.only or s.name in args.only]
    for step in chosen:
        path = step.result(Path(args.out), slug, args.quick)
        if path.exists() and step.name not in (args.redo or ()):
            print(f"[suite] {step.name}: done ({path.name})", flush=True)
            continue
        if time.time() > deadline:
            print(f"[suite] out of budget before {step.name}: run again to go on", flush=True)
            return 3
        print(f"[suite] {step.name} ...", flush=True)
        if not step.run(args, device, deadline):
            print(f"[suite] {step.name}: paused at the budget; run again to go on", flush=True)
            return 3
    print("[suite] every step is done", flush=True)
    return 0


def step_names(cases: tuple[str, ...] | list[str] = CASES) -> list[str]:
    return [s.name for s in steps(cases)]
