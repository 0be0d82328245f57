"""``import-stimuli`` and ``import-metadata`` commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from core.access import Role
from core.cli import summary
from core.workflows.stimuli import KEY_MODES, import_files, import_metadata, iter_folder, parse_code_map
from db.engine import make_engine, make_sessionmaker
from db.models import Study
from db.queries import get_or_create_study


def register(subparsers: argparse._SubParsersAction) -> None:
    stimuli = subparsers.add_parser(
        "import-stimuli", help=summary("import-stimuli")
    )
    stimuli.add_argument("--study", required=True, help="study name")
    stimuli.add_argument("--create", action="store_true", help="create the study if missing")
    stimuli.add_argument(
        "--key", choices=sorted(KEY_MODES), default="name",
        help="how rating files name stimuli (only used with --create; default: name)",
    )
    stimuli.add_argument(
        "--case-sensitive", action="store_true", help="ids are case-sensitive (with --create)"
    )
    stimuli.add_argument("--precropped", action="store_true", help="images are face crops already")
    stimuli.add_argument("paths", nargs="+", type=Path, help="image files, folders or ZIPs")
    stimuli.set_defaults(handler=run_import_stimuli)

    metadata = subparsers.add_parser(
        "import-metadata", help=summary("import-metadata")
    )
    metadata.add_argument("--study", required=True, help="study name")
    metadata.add_argument("--id-column", help="column holding stimulus ids (default: detected)")
    metadata.add_argument("--intended-column", help="intended-emotion column (default: detected)")
    metadata.add_argument(
        "--code", action="append", default=[], metavar="CODE=LABEL",
        help="label code for the intended column, e.g. --code 1=anger (repeatable)",
    )
    metadata.add_argument("file", type=Path, help="the metadata table")
    metadata.set_defaults(handler=run_import_metadata)


def run_import_stimuli(args: argparse.Namespace) -> int:
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    factory = make_sessionmaker(make_engine(args.db))
    with factory.begin() as session:
        study = _study(session, args)
    if study is None:
        return 2
    # A transaction of its own: a study created above must not hold the write lock while the
    # images are read.
    with factory.begin() as session:
        report = import_files(
            session, study.id, _sources(args.paths), progress=_progress, precropped=args.precropped,
            actor=Role.OPERATOR,
        )
    print(file=sys.stderr)
    for entry in report.entries:
        if entry.status != "added":
            print(f"{entry.status.upper():9} {entry.file}: {entry.message}")
    print(f"{study.name}: {report.summary()}")
    return 0 if report.ok else 1


def run_import_metadata(args: argparse.Namespace) -> int:
    try:
        code_map = parse_code_map(",".join(args.code))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    factory = make_sessionmaker(make_engine(args.db))
    with factory.begin() as session:
        study = session.scalar(select(Study).where(Study.name == args.study))
        if study is None:
            print(f"error: no study named {args.study!r}", file=sys.stderr)
            return 2
        try:
            report = import_metadata(
                session, study.id, args.file.name, args.file.read_bytes(),
                id_column=args.id_column, intended_column=args.intended_column,
                code_map=code_map or None,
                actor=Role.OPERATOR,
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    for issue in report.issues:
        print(f"row {issue.row} ({issue.stimulus}): {issue.reason}")
    print(
        f"id column: {report.id_column}; intended column: {report.intended_column or '-'}; "
        f"attributes: {', '.join(report.attribute_columns.values()) or '-'}"
    )
    print(report.summary())
    return 0 if report.ok else 1


def _study(session, args: argparse.Namespace) -> Study | None:
    study = session.scalar(select(Study).where(Study.name == args.study))
    if study is None and args.create:
        study = get_or_create_study(
            session, args.study, stimulus_key=args.key,
            key_case_insensitive=not args.case_sensitive,
            actor=Role.OPERATOR,
        )
    if study is None:
        print(f"error: no study named {args.study!r} (add --create to make it)", file=sys.stderr)
    return study


def _sources(paths: list[Path]) -> Iterator[tuple[str, Path]]:
    for path in paths:
        if path.is_dir():
            yield from iter_folder(path)
        else:
            yield path.name, path


def _progress(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        print(f"\r{done}/{total} files", end="", file=sys.stderr, flush=True)
