"""Service subcommands of ``simudy``: migrate, serve, worker, local, submit, demo and admin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import add_reconstruction_args
from core.errors import SimudyError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="create or upgrade the database schema (Alembic)")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("serve", help="run the HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run a Celery worker on queue 'gpu' (one job at a time)")
    p.add_argument("--hostname", default=None, help="worker name (default: celery@<host>)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("local", help="migrate, make a local key, run API + one worker (CPU)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--key-file", default="var/api-key")
    p.set_defaults(func=cmd_local)

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
    p.add_argument("--out", type=Path, help="write reconstruction.npz, grid.png, loss.csv, job.json here")
    p.set_defaults(func=cmd_submit)

    admin = sub.add_parser("admin", help="manage teams and API keys")
    asub = admin.add_subparsers(dest="admin_command", required=True, parser_class=type(admin))
    p = asub.add_parser("create-team", help="create a team")
    p.add_argument("name")
    p.set_defaults(func=cmd_create_team)
    p = asub.add_parser("create-key", help="create an API key (printed once, on the last line)")
    p.add_argument("--team", required=True)
    p.set_defaults(func=cmd_create_key)
    p = asub.add_parser("revoke-key", help="revoke an API key by id or prefix")
    p.add_argument("key")
    p.set_defaults(func=cmd_revoke_key)


def _settings():  # noqa: ANN202
    from api.settings import get_settings

    return get_settings()


def _schema_ready() -> None:
    from sqlalchemy import inspect
    from sqlalchemy.exc import OperationalError

    from api.db.session import get_engine

    from api.settings import get_settings

    path = get_settings().sqlite_path
    if path is not None and not path.exists():
        raise SimudyError(f"no database at {path} yet: run `simudy migrate` first")
    try:
        if not inspect(get_engine()).has_table("jobs"):
            raise SimudyError("the database has no schema yet: run `simudy migrate` first")
    except OperationalError as err:
        raise SimudyError(f"cannot reach the database: {str(err.orig).strip().splitlines()[0]}") from None


def cmd_migrate(args: argparse.Namespace) -> int:
    from api.db.migrate import upgrade

    settings = _settings()
    try:
        upgrade(settings.database_url, args.revision)
    except Exception as err:  # noqa: BLE001 - unreachable database, bad revision
        raise SimudyError(f"migration failed: {str(err).strip().splitlines()[0]}") from None
    print(f"database at {args.revision}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app

    _schema_ready()
    uvicorn.run(create_app(_settings()), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.celery_app import GPU_QUEUE, get_app

    _schema_ready()
    argv = ["worker", "-Q", GPU_QUEUE, "-c", "1", "--prefetch-multiplier", "1",
            "--max-tasks-per-child", "1", "--loglevel", args.loglevel, "--without-gossip",
            "--without-mingle"]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    get_app().worker_main(argv)
    return 0


def cmd_create_team(args: argparse.Namespace) -> int:
    from api.crud.teams import create_team
    from api.db.session import session_scope

    _schema_ready()
    with session_scope() as s:
        team = create_team(s, name=args.name)
        print(f"created team {team.name} ({team.id})")
    return 0


def cmd_create_key(args: argparse.Namespace) -> int:
    from api.crud.teams import create_key, get_team_by_name
    from api.db.session import session_scope

    _schema_ready()
    with session_scope() as s:
        row, key = create_key(s, team=get_team_by_name(s, name=args.team))
        print(f"key id {row.id}, prefix {row.prefix}, team {args.team}; shown once, store it now:",
              file=sys.stderr)
    print(key)
    return 0


def cmd_revoke_key(args: argparse.Namespace) -> int:
    from api.crud.teams import revoke_key
    from api.db.session import session_scope

    _schema_ready()
    with session_scope() as s:
        row = revoke_key(s, id_or_prefix=args.key)
        print(f"revoked key {row.id} (prefix {row.prefix})")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from api.local import run_local

    return run_local(host=args.host, port=args.port, key_file=args.key_file)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def cmd_submit(args: argparse.Namespace) -> int:
    from api.submit import run_submit

    return run_submit(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from api.demo import run_demo

    return run_demo(url=args.url, key_file=args.key_file, iterations=args.iterations)
