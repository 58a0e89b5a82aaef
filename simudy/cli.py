"""Entry point of the ``simudy`` command.

Each part contributes its subcommands through an ``add_commands(subparsers)`` function; a
subcommand sets ``func(args) -> int``. Bad input (``SimudyError``) exits 2 with one line.
Methods from plugins (``SIMUDY_METHOD_MODULES``, comma-separated modules, the variable the
service reads too) are imported first, so ``--method`` offers them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from core.errors import SimudyError

COMMAND_MODULES = ("core.cli", "service.cli", "api.cli", "worker.cli", "client.cli", "bench.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one readable line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue  # that part is not installed in this checkout
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.methods import load_method_modules

    try:
        load_method_modules(os.environ.get("SIMUDY_METHOD_MODULES", "").split(","))
    except SimudyError as err:
        print(f"simudy: error: SIMUDY_METHOD_MODULES: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SimudyError as err:
        print(f"simudy {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"simudy {args.command}: interrupted", file=sys.stderr)
        return 130
