"""``simudy bench CASE... | profile`` and ``simudy bench-report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cases import get_case, public_names
from bench.prepare import DEFAULT_CACHE
from bench.provenance import REPO
from core.errors import SimudyError

RESULTS = REPO / "bench" / "results"


class BenchError(SimudyError):
    """Bad benchmark input (unknown case, ...)."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run benchmark cases (or 'profile') and record results",
                       description="cases: " + ", ".join(public_names() + ["profile"]))
    p.add_argument("cases", nargs="+", metavar="CASE")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder with cifar10_train.npz, cifar10_pretrain_jpeg.npz, cifar10_test.npz")
    p.add_argument("--out", type=Path, default=RESULTS, help="where results go (default bench/results)")
    p.add_argument("--quick", action="store_true", help="minutes on a CPU: few iterations and steps")
    p.add_argument("--iterations", type=int, help="override the case's image updates")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="theta0/thetaf cache (default bench/cache)")
    p.add_argument("--profile-limit", type=float, default=60.0,
                   help="profile: skip configurations predicted to take longer (seconds)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-report", help="regenerate BENCHMARKS.md from bench/results/*.json")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    p.set_defaults(func=cmd_report)


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.profile import run_profile
    from bench.runner import run_case
    from core.device import resolve_device

    if args.iterations is not None and args.iterations < 1:
        raise BenchError("--iterations must be at least 1")
    try:  # every name is checked before anything runs
        cases = [None if name == "profile" else get_case(name) for name in args.cases]
    except KeyError as err:
        raise BenchError(err.args[0]) from None
    device = resolve_device(args.device)
    for case in cases:
        if case is None:
            run_profile(args, device)
        else:
            run_case(case, args, device, args.cache)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    if not args.results.is_dir():
        raise BenchError(f"{args.results}: no such folder")
    print(write_report(args.results, args.out))
    return 0
