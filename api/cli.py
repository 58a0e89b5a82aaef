"""HTTP subcommands of ``simudy``: ``serve`` (the API) and ``local`` (API + one worker on the
embedded defaults, what ``make run`` starts)."""

from __future__ import annotations

import argparse

from core.errors import SimudyError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="API processes (each one is one Python interpreter; use about one per core)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("local", help="migrate, make a local key, run API + one worker (CPU)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--key-file", default="var/api-key")
    p.set_defaults(func=cmd_local)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.local import bind
    from api.main import create_app
    from service.cli import schema_ready
    from service.config import get_config

    if args.workers < 1:
        raise SimudyError("--workers must be at least 1")
    sock = bind(args.host, args.port)  # a port in use is one line, before anything starts
    try:
        schema_ready()
        config = get_config()
        options = {"host": args.host, "port": args.port, "log_level": "info",
                   "access_log": config.access_log}
        if args.workers == 1:
            uvicorn.Server(uvicorn.Config(create_app(config), **options)).run(sockets=[sock])
            return 0
    finally:
        sock.close()
    # each process builds its own app from the same environment; uvicorn's supervisor binds the
    # port (checked free just above) and hands it to them
    uvicorn.run("api.main:create_app", factory=True, workers=args.workers, **options)
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from api.local import run_local

    return run_local(host=args.host, port=args.port, key_file=args.key_file)
