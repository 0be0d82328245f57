"""Command line: ``python -m core <command> ...`` (``--help`` lists the commands).

Each command lives in the module that owns the logic and registers itself via ``register``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Lightest first: a command is looked up in these in order, so `import-ratings` never imports
# the model stack (torch, onnx: about 1 GB and 10 s before the first line of work).
COMMAND_MODULES = (
    "core.cli.stimuli",
    "core.cli.ratings",
    "core.cli.report",
    "core.cli.models",
)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or, when ``argv`` names one, up to the module owning it."""
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    parser.add_argument("--db", help="SQLAlchemy URL (default: $FACEAGREE_DB_URL or ./data)")
    commands = parser.add_subparsers(dest="command", required=True)
    wanted = _command_named(argv)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
        if wanted in commands.choices:
            break
    return parser


def _command_named(argv: list[str] | None) -> str | None:
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--db")
    early.add_argument("command", nargs="?")
    known, _ = early.parse_known_args(argv)
    return known.command


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
