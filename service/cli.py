"""Service administration subcommands of ``simudy``: ``migrate`` and ``admin`` (teams, keys)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from core.errors import SimudyError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="create or upgrade the database schema (Alembic)")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)

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
    p = asub.add_parser("list-teams", help="every team, with its number of live keys")
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    p.set_defaults(func=cmd_list_teams)
    p = asub.add_parser("list-keys", help="API keys (never the keys themselves): prefix, id, team, "
                        "created, last used (from the audit trail), revoked")
    p.add_argument("--team", help="only this team's keys")
    p.add_argument("--all", action="store_true", help="revoked keys too")
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    p.set_defaults(func=cmd_list_keys)


def schema_ready() -> None:
    """Fail with one line when the database is missing, unreachable or not migrated."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import OperationalError

    from service.config import get_config
    from service.db.session import get_engine

    path = get_config().sqlite_path
    if path is not None and not path.exists():
        raise SimudyError(f"no database at {path} yet: run `simudy migrate` first")
    try:
        if not inspect(get_engine()).has_table("jobs"):
            raise SimudyError("the database has no schema yet: run `simudy migrate` first")
    except OperationalError as err:
        raise SimudyError(f"cannot reach the database: {str(err.orig).strip().splitlines()[0]}") from None


def cmd_migrate(args: argparse.Namespace) -> int:
    from service.config import get_config
    from service.db.migrate import upgrade

    try:
        upgrade(get_config().database_url, args.revision)
    except Exception as err:  # noqa: BLE001 - unreachable database, bad revision
        raise SimudyError(f"migration failed: {str(err).strip().splitlines()[0]}") from None
    print(f"database at {args.revision}")
    return 0


def cmd_create_team(args: argparse.Namespace) -> int:
    from service.crud.teams import create_team
    from service.db.session import session_scope

    schema_ready()
    with session_scope() as s:
        team = create_team(s, name=args.name)
        print(f"created team {team.name} ({team.id})")
    return 0


def cmd_create_key(args: argparse.Namespace) -> int:
    from service.crud.teams import create_key, get_team_by_name
    from service.db.session import session_scope

    schema_ready()
    with session_scope() as s:
        row, key = create_key(s, team=get_team_by_name(s, name=args.team))
        print(f"key id {row.id}, prefix {row.prefix}, team {args.team}; shown once, store it now:",
              file=sys.stderr)
    print(key)
    return 0


def _print_rows(rows: list[dict[str, Any]], as_json: bool, empty: str) -> None:
    """A JSON array, or an aligned table with a header (``empty`` when there are no rows)."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(empty)
        return
    cells = [list(rows[0])] + [["-" if v is None else str(v) for v in r.values()] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def _when(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at is not None else None


def cmd_list_teams(args: argparse.Namespace) -> int:
    from service.crud.teams import list_teams
    from service.db.session import session_scope

    schema_ready()
    with session_scope() as s:
        rows = [{"name": t.name, "id": t.id, "created": _when(t.created_at), "live_keys": n}
                for t, n in list_teams(s)]
    _print_rows(rows, args.json, "no teams yet: simudy admin create-team NAME")
    return 0


def cmd_list_keys(args: argparse.Namespace) -> int:
    from service.crud.teams import get_team_by_name, list_keys
    from service.db.session import session_scope

    schema_ready()
    with session_scope() as s:
        team = get_team_by_name(s, name=args.team) if args.team else None
        rows = [{"prefix": k.prefix, "id": k.id, "team": k.team.name, "created": _when(k.created_at),
                 "last_used": _when(last), "revoked": _when(k.revoked_at)}
                for k, last in list_keys(s, team=team, include_revoked=args.all)]
    _print_rows(rows, args.json, "no keys" + (" (--all shows revoked ones)" if not args.all else ""))
    return 0


def cmd_revoke_key(args: argparse.Namespace) -> int:
    from service.crud.teams import revoke_key
    from service.db.session import session_scope

    schema_ready()
    with session_scope() as s:
        row = revoke_key(s, id_or_prefix=args.key)
        print(f"revoked key {row.id} (prefix {row.prefix})")
    return 0
