"""Command line: ``python -m core <command> ...`` (``--help`` lists the commands).

Each command lives in the module that owns the logic and registers itself via ``register``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "core.cli.stimuli",
    "core.cli.ratings",
    "core.cli.report",
    "core.cli.models",
    "core.cli.jobs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    parser.add_argument("--db", help="SQLAlchemy URL (default: $FACEAGREE_DB_URL or ./data)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
