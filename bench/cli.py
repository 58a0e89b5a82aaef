"""``simudy bench CASE... | profile`` and ``simudy bench-report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cases import get_case, public_names
from bench.prepare import DEFAULT_CACHE
from bench.profile import PROFILE_KINDS
from bench.provenance import REPO
from core.errors import SimudyError

RESULTS = REPO / "bench" / "results"


class BenchError(SimudyError):
    """Bad benchmark input (unknown case, ...)."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run benchmark cases (or 'profile') and record results",
                       description="cases: " + ", ".join(public_names() + ["profile", "side-by-side", "quality"]))
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
    p.add_argument("--profile-kind", choices=list(PROFILE_KINDS), default="resnet18",
                   help="profile: ResNet-18 against N and epochs, or the MLP engines against steps "
                        "(mlp-momentum: on a recipe with momentum and weight decay)")
    g = p.add_argument_group("side-by-side (the authors' code and simudy, alternating)")
    g.add_argument("--authors", type=Path, help="a checkout of github.com/BlueBlood6/SimuDy")
    g.add_argument("--case", nargs="+", default=["mlp-20"], help="MLP cases (default mlp-20)")
    g.add_argument("--threads", nargs="+", type=int,
                   help="thread counts (side-by-side: default 1; profile: the first, default torch's)")
    g.add_argument("--updates", type=int, default=5, help="timed image updates per process")
    g.add_argument("--rounds", type=int, default=3, help="fresh processes per contestant")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--contestants", nargs="+", default=["authors", "simudy", "simudy-generic"],
                   choices=["authors", "simudy", "simudy-generic"])
    g = p.add_argument_group("quality (variants of the settings x targets x seeds; targets: --case)")
    g.add_argument("--variants", nargs="+", default=["default"], help="named in bench/quality.py")
    g.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="reconstruction seeds")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-suite", help="every GPU measurement in a fixed order, resumable within a time budget")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--budget-seconds", type=float, default=540.0,
                   help="stop cleanly before this many seconds (state kept; run again to go on)")
    p.add_argument("--quick", action="store_true", help="wiring check: every case shrunk")
    p.add_argument("--iterations", type=int, help="override every case's image updates")
    p.add_argument("--profile-limit", type=float, default=60.0)
    p.add_argument("--cases", nargs="+", metavar="CASE", help="the cases to run (default: the GPU rows)")
    p.add_argument("--only", nargs="+", metavar="STEP", help="these steps only")
    p.add_argument("--redo", nargs="+", metavar="STEP", help="measure these again even if done")
    p.set_defaults(func=cmd_suite)

    p = sub.add_parser("bench-load", help="load the API: concurrent status polls, then with stalled uploads")
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="admin URL; a fresh database is made and dropped")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--stalled", type=int, default=20, help="uploads that stall during the second phase")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the result JSON here")
    p.add_argument("serve_args", nargs=argparse.REMAINDER, help="after --: extra `simudy serve` arguments")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("bench-report", help="regenerate BENCHMARKS.md from bench/results/*.json")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    p.set_defaults(func=cmd_report)


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.profile import run_profile
    from bench.runner import run_case
    from core.execution import resolve_device

    if args.iterations is not None and args.iterations < 1:
        raise BenchError("--iterations must be at least 1")
    special = ("profile", "side-by-side", "quality")
    try:  # every name is checked before anything runs
        cases = [name if name in special else get_case(name) for name in args.cases]
        for name in args.case if {"side-by-side", "quality"} & set(args.cases) else []:
            get_case(name)
    except KeyError as err:
        raise BenchError(err.args[0]) from None
    if "side-by-side" in args.cases and args.authors is None:
        raise BenchError("side-by-side needs --authors PATH (a checkout of BlueBlood6/SimuDy)")
    device = resolve_device(args.device)
    for case in cases:
        if case == "profile":
            run_profile(args, device)
        elif case == "side-by-side":
            from bench.side_by_side import run_side_by_side
            run_side_by_side(args, device)
        elif case == "quality":
            from bench.quality import run_quality
            if args.iterations is None:
                raise BenchError("quality needs --iterations (the equal budget of image updates)")
            run_quality(args, device)
        else:
            run_case(case, args, device, args.cache)
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from bench.suite import run_suite, step_names
    from core.execution import resolve_device

    try:
        known = step_names(args.cases) if args.cases else step_names()
        for name in args.cases or []:
            get_case(name)
    except KeyError as err:
        raise BenchError(err.args[0]) from None
    for name in (args.only or []) + (args.redo or []):
        if name not in known:
            raise BenchError(f"unknown step {name!r} (steps: {', '.join(known)})")
    return run_suite(args, resolve_device(args.device))


def cmd_load(args: argparse.Namespace) -> int:
    from bench.load import run_load

    run_load(postgres_url=args.postgres, redis_url=args.redis, connections=args.connections,
             seconds=args.seconds, stalled=args.stalled, wrk_threads=args.wrk_threads, out=args.out,
             serve_args=[a for a in args.serve_args if a != "--"])
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    if not args.results.is_dir():
        raise BenchError(f"{args.results}: no such folder")
    print(write_report(args.results, args.out))
    return 0
