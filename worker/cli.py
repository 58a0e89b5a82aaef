"""``simudy worker``: a Celery worker on queue ``gpu``, one job at a time."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run a Celery worker on queue 'gpu' (one job at a time)")
    p.add_argument("--hostname", default=None, help="worker name (default: celery@<host>)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from service.cli import schema_ready
    from service.queue import GPU_QUEUE
    from worker.celery_app import get_app

    schema_ready()
    argv = ["worker", "-Q", GPU_QUEUE, "-c", "1", "--prefetch-multiplier", "1",
            "--max-tasks-per-child", "1", "--loglevel", args.loglevel, "--without-gossip",
            "--without-mingle"]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    get_app().worker_main(argv)
    return 0
