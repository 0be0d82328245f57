"""Command line: ``python -m core <command> ...`` (``--help`` lists the commands).

Each command lives in the module that owns the logic and registers itself via ``register``.
Only the module of the command being run is imported (``core.cli.COMMANDS``), so ``--help`` and
the light commands start in well under a second without pandas, scipy or torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from core.cli import COMMANDS


def requested_command(argv: list[str]) -> str | None:
    """The command word in ``argv`` (skipping ``--db URL``); None when there is none."""
    words = iter(argv)
    for word in words:
        if word == "--db":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the full options of the requested command; others are listed by name."""
    parser = argparse.ArgumentParser(
        prog="python -m core", description="FaceAgree without a browser: imports, model runs and every table."
    )
    parser.add_argument("--db", help="SQLAlchemy URL (default: $FACEAGREE_DB_URL or ./data)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = requested_command(sys.argv[1:] if argv is None else argv)
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0]).register(commands)
    for name, (_module, summary) in COMMANDS.items():
        if name not in commands.choices:
            commands.add_parser(name, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
