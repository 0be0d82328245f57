"""``export-bundle`` and ``import-bundle``: move one study between deployments as a ZIP.

    python -m core export-bundle --study NAME --out study.faceagree.zip [--no-images]
    python -m core import-bundle study.faceagree.zip
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import select

from core.access import Role
from core.cli import summary
from core.workflows.bundle import BundleError, export_bundle, import_bundle
from db.engine import make_engine, make_sessionmaker
from db.models import Study


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export-bundle", help=summary("export-bundle"),
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--study", required=True, help="study name")
    export.add_argument("--out", required=True, type=Path, help="bundle file to write (.faceagree.zip)")
    export.add_argument("--no-images", action="store_true",
                        help="leave the face images and thumbnails out (hashes and sizes stay)")
    export.set_defaults(handler=run_export)

    imported = subparsers.add_parser(
        "import-bundle", help=summary("import-bundle"),
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imported.add_argument("bundle", type=Path, help="the bundle file")
    imported.set_defaults(handler=run_import)


def run_export(args: argparse.Namespace) -> int:
    factory = make_sessionmaker(make_engine(args.db))
    with factory() as session:
        study = session.scalar(select(Study).where(Study.name == args.study))
        if study is None:
            return _fail(f"no study named {args.study!r}")
        try:
            summary = export_bundle(session, study.id, args.out, include_images=not args.no_images)
        except BundleError as error:
            return _fail(str(error))
    print(f"{summary.study}: {summary.n_stimuli} stimuli ({summary.n_images} images), "
          f"{summary.n_batches} rating batches, {summary.n_predictions} predictions, "
          f"{summary.n_models} registered models -> {summary.path} ({summary.size:,} bytes)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    if not args.bundle.is_file():
        return _fail(f"no such file: {args.bundle}")
    factory = make_sessionmaker(make_engine(args.db))
    try:
        with factory.begin() as session, args.bundle.open("rb") as stream:
            summary = import_bundle(session, stream, actor=Role.OPERATOR)
    except BundleError as error:
        return _fail(f"{args.bundle.name}: {error}. Nothing was imported.")
    renamed = f" (a study named {summary.renamed_from!r} exists already)" if summary.renamed_from else ""
    restored = (f"; {summary.n_restored_batches} batches restored from stored rows"
                if summary.n_restored_batches else "")
    print(f"imported as study {summary.study!r}{renamed}: {summary.n_stimuli} stimuli, "
          f"{summary.n_batches} rating batches{restored}, {summary.n_predictions} predictions")
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
