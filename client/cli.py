"""Client subcommands of ``simudy``: ``submit`` (a reconstruction as a job on a service) and
``demo`` (the whole audit through the HTTP API)."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import add_reconstruction_args


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a tiny model, reconstruct it through the API, score it")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--key-file", default="var/api-key")
    p.add_argument("--iterations", type=int, default=200)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("submit", help="reconstruct as a job on a simudy service (same inputs as reconstruct)")
    add_reconstruction_args(p)
    p.add_argument("--name", help="job name shown in listings")
    p.add_argument("--truth", type=Path, metavar="TRAIN_IMAGES.npz",
                   help="score the result against the true training images")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--key-file", default="var/api-key")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    p.add_argument("--poll-seconds", type=_positive_float, default=2.0)
    p.add_argument("--out", type=Path, help="write the same files as reconstruct, plus job.json, here")
    p.set_defaults(func=cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    from client.submit import run_submit

    return run_submit(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from client.demo import run_demo

    return run_demo(url=args.url, key_file=args.key_file, iterations=args.iterations)
