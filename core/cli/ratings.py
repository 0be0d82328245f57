"""``import-ratings``, ``rating-batches`` and ``demo`` commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import select

from core.access import Role
from core.cli import summary
from core.io.tabular import TableError, read_table
from core.ratings.layouts import (
    DIMENSIONS,
    LAYOUTS,
    NUMERIC_DIMENSIONS,
    ROLES,
    ColumnMapping,
    MappingError,
    PreparedRatings,
    detect_mapping,
    numeric_values,
    parse_label_codes,
    prepare_ratings,
    rejected_rows_table,
    to_csv_bytes,
)
from core.ratings.repeats import DEFAULT_POLICY, REPEAT_POLICIES, RepeatsRefused
from core.ratings.scales import PRESETS, Scale, parse_scale, scale_change, suggest_scale
from db.engine import make_engine, make_sessionmaker
from db.models import Study
from db.repeats import repeats_for_import
from db.ratings import (
    DuplicateFileError,
    ImportRejected,
    batches_frame,
    declared_scales,
    import_batch_in_chunks,
    list_batches,
    stimulus_index,
)
from core.ratings.stimulus_keys import KEY_MODES
from db.stimuli import AmbiguousKeyError, key_mode_suggestion, set_key_mode

ERRORS_SHOWN = 30


def register(subparsers: argparse._SubParsersAction) -> None:
    ratings = subparsers.add_parser(
        "import-ratings",
        help=summary("import-ratings"),
        description="Import a rating file as one batch: all rows, or with --partial only the "
        "valid rows (the rejected rows are written to a CSV). Layout and columns are detected; "
        "every numeric dimension needs a declared scale.",
    )
    ratings.add_argument("--study", required=True, help="study name")
    ratings.add_argument("file", type=Path, help="the rating file")
    ratings.add_argument("--layout", choices=sorted(LAYOUTS), help="override the detected layout")
    ratings.add_argument(
        "--map", action="append", default=[], metavar="ROLE=COLUMN",
        help=f"column for a role ({', '.join(ROLES)}), e.g. --map rater=Participant; "
        "ROLE= unmaps it (repeatable)",
    )
    ratings.add_argument(
        "--dimension", choices=DIMENSIONS,
        help="wide layouts: the dimension of columns whose header names none",
    )
    ratings.add_argument(
        "--ignore", action="append", default=[], metavar="COLUMN", help="leave a column out"
    )
    for dim in NUMERIC_DIMENSIONS:
        ratings.add_argument(
            f"--{dim}-scale", metavar="SCALE",
            help="sam9, likert7, likert5, -100..100, 0..100, 0..1, -1..1 or MIN..MAX",
        )
    ratings.add_argument(
        "--new-scale", action="store_true",
        help="accept declared scales that differ from the study's earlier batches",
    )
    ratings.add_argument(
        "--code", action="append", default=[], metavar="CODE=LABEL",
        help="emotion code, e.g. --code 1=anger (repeatable)",
    )
    ratings.add_argument(
        "--partial", action="store_true",
        help="import the valid rows only and write the rejected ones to --rejected",
    )
    ratings.add_argument(
        "--rejected", type=Path,
        help="where to write rejected rows (default: FILE.rejected.csv next to the file)",
    )
    ratings.add_argument(
        "--repeats", choices=list(REPEAT_POLICIES), default=DEFAULT_POLICY,
        help="a rater rating a stimulus again (in this file or earlier batches): "
        + "; ".join(f"{name}: {text}" for name, text in REPEAT_POLICIES.items()),
    )
    ratings.add_argument(
        "--allow-duplicate", action="store_true", help="import a file already imported"
    )
    ratings.add_argument("--by", default="", help="who uploads (stored as provenance)")
    ratings.add_argument(
        "--stimulus-key", choices=list(KEY_MODES),
        help="match the file's stimulus ids by file name, stem (survey tools: neutral_001) or "
        "relative path; saved for the study",
    )
    ratings.add_argument(
        "--ignore-case", action=argparse.BooleanOptionalAction,
        help="with --stimulus-key: ignore upper/lower case in stimulus ids (default: the study's setting)",
    )
    ratings.add_argument(
        "--dry-run", action="store_true", help="detect and validate only; store nothing"
    )
    ratings.set_defaults(handler=run_import_ratings)

    batches = subparsers.add_parser("rating-batches", help=summary("rating-batches"))
    batches.add_argument("--study", required=True, help="study name")
    batches.set_defaults(handler=run_list_batches)

    demo = subparsers.add_parser("demo", help=summary("demo"))
    demo.set_defaults(handler=run_demo)


def run_import_ratings(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
        frame = read_table(args.file.name, data)
        codes = parse_label_codes(args.code)
        scales = {dim: _scale(args, dim) for dim in NUMERIC_DIMENSIONS}
    except (OSError, TableError, ValueError) as error:
        return _fail(str(error))
    factory = make_sessionmaker(make_engine(args.db))
    with factory() as session:  # reads only: the import writes in short transactions of its own
        study = session.scalar(select(Study).where(Study.name == args.study))
        if study is None:
            return _fail(f"no study named {args.study!r}; create it with import-stimuli --create")
        try:
            if args.stimulus_key:
                folded = study.key_case_insensitive if args.ignore_case is None else args.ignore_case
                with factory.begin() as writer:
                    set_key_mode(writer, study.id, args.stimulus_key, folded, actor=Role.OPERATOR)
                session.rollback()  # end the read snapshot: the next reads see the new setting
            index = stimulus_index(session, study.id)
            mapping = _mapping(args, frame, index, codes)
            values = numeric_values(frame, mapping, index)
            earlier = declared_scales(session, study.id)
            _print_mapping(mapping, values, scales, earlier)
            problems = _scale_problems(values, scales, earlier, args.new_scale)
            if problems:
                return _fail("\n".join(problems))
            prepared = prepare_ratings(frame, mapping, index=index, scales=scales, codes=codes,
                                       repeats=args.repeats)
        except (AmbiguousKeyError, MappingError, ValueError) as error:
            problems = getattr(error, "problems", [str(error)])
            return _fail("cannot apply the mapping:\n  " + "\n  ".join(problems))
        _report_errors(prepared, frame, args)
        _print_repeats(repeats_for_import(session, study.id, prepared), args.repeats)
        _suggest_key_mode(session, study, prepared)
        if args.dry_run:
            session.rollback()
            print(f"dry run: {len(prepared.ratings)} valid ratings, nothing stored")
            return 0 if prepared.ok else 1
        try:
            result = import_batch_in_chunks(
                factory, study.id, prepared, file_name=args.file.name, data=data,
                uploaded_by=args.by, partial=args.partial, allow_duplicate=args.allow_duplicate,
                actor=Role.OPERATOR,
            )
        except RepeatsRefused as error:
            return _fail(f"{error}\npass --repeats average|first|newest to import them", code=1)
        except (ImportRejected, DuplicateFileError) as error:
            return _fail(_refusal(error), code=1)
    rejected = f", {len(result.rejected_rows)} rows rejected" if result.rejected_rows else ""
    print(f"{study.name}: batch #{result.batch_id} stored with {result.n_ratings} ratings{rejected}")
    return 0


def _scale(args: argparse.Namespace, dim: str) -> Scale | None:
    text = getattr(args, f"{dim}_scale")
    return parse_scale(text) if text else None


def _mapping(args, frame, index, codes) -> ColumnMapping:
    mapping = detect_mapping(frame, index, codes, layout=args.layout)
    for item in args.map:
        role, sep, column = item.partition("=")
        if not sep or role.strip() not in ROLES:
            raise ValueError(f"bad --map {item!r}: write ROLE=COLUMN with ROLE one of {ROLES}")
        if column.strip():
            mapping.columns[role.strip()] = column.strip()
        else:
            mapping.columns.pop(role.strip(), None)
    mapping.dimension = args.dimension or mapping.dimension
    mapping.ignored = sorted(set(mapping.ignored) | set(args.ignore))
    return mapping


def _print_mapping(mapping: ColumnMapping, values: dict, scales: dict, earlier: dict) -> None:
    print(f"layout: {mapping.layout} ({LAYOUTS[mapping.layout]})")
    for role, column in mapping.columns.items():
        print(f"  {role:9} <- {column!r}")
    if mapping.dimension:
        print(f"  dimension of unlabelled columns: {mapping.dimension}")
    if mapping.ignored:
        print(f"  ignored columns: {', '.join(mapping.ignored)}")
    for dim, numbers in values.items():
        if not len(numbers):
            continue
        declared = scales.get(dim)
        suggestion = suggest_scale(numbers, earlier.get(dim, []))
        note = declared.label if declared else f"NOT DECLARED: pass --{dim}-scale (suggested: {suggestion.text})"
        print(f"  {dim}: values {numbers.min():g}..{numbers.max():g}; scale {note}")


def _scale_argument(scale: Scale) -> str:
    """How to write ``scale`` after --valence-scale / --arousal-scale."""
    return scale.name if scale.name in PRESETS else f"{scale.low:g}..{scale.high:g}"


def _scale_problems(values: dict, scales: dict, earlier: dict, accept_new: bool) -> list[str]:
    """Undeclared scales and scales unlike the study's earlier batches, each naming its flag."""
    problems = []
    for dim, numbers in values.items():
        declared = scales.get(dim)
        if declared is None and len(numbers):
            suggestion = suggest_scale(numbers, earlier.get(dim, []))
            problems.append(
                f"the file has {dim} values ({numbers.min():g}..{numbers.max():g}) but no scale: "
                f"pass --{dim}-scale with the scale raters used, e.g. --{dim}-scale "
                f"{_scale_argument(suggestion.scale)} (suggested: {suggestion.text})"
            )
        elif declared is not None and not accept_new:
            change = scale_change(dim, declared, earlier.get(dim, []))
            if change:
                problems.append(f"{change}; pass --new-scale if this batch really used it")
    return problems


def _print_repeats(repeats, policy: str) -> None:
    """How many rater x stimulus pairs repeat, and what the chosen policy does with them."""
    if repeats.empty:
        return
    earlier = int((repeats["earlier"] > 0).sum())
    print(f"repeated ratings: {len(repeats)} rater x stimulus pairs rated more than once "
          f"({earlier} of them in earlier batches); policy '{policy}': {REPEAT_POLICIES[policy]}")


def _refusal(error: ImportRejected | DuplicateFileError) -> str:
    """The database's refusal in command-line words: which flag imports anyway."""
    if isinstance(error, DuplicateFileError):
        return f"{error}\npass --allow-duplicate to import it again anyway"
    if error.prepared.ratings.empty:
        return str(error)
    rows = len(error.prepared.rejected_rows)
    return (f"{rows} of {error.prepared.n_file_rows} rows have problems (listed above), so nothing "
            "was imported: fix the file and rerun, or pass --partial to import the valid rows only "
            "(the rejected rows are written to --rejected)")


def _report_errors(prepared: PreparedRatings, frame, args: argparse.Namespace) -> None:
    rows = prepared.rejected_rows
    print(f"{prepared.n_file_rows} rows read, {len(prepared.ratings)} valid ratings, "
          f"{len(rows)} row{'' if len(rows) == 1 else 's'} with problems")
    for error in prepared.errors.head(ERRORS_SHOWN).itertuples():
        column = f" [{error.column}]" if error.column else ""
        print(f"  row {error.row}{column}: {error.kind}: {error.message} ({error.value!r})")
    if len(prepared.errors) > ERRORS_SHOWN:
        print(f"  ... {len(prepared.errors) - ERRORS_SHOWN} more problems")
    if rows and (args.partial or args.rejected):
        target = args.rejected or args.file.with_name(args.file.name + ".rejected.csv")
        target.write_bytes(to_csv_bytes(rejected_rows_table(frame, prepared.errors)))
        print(f"rejected rows with reasons written to {target}")


def _suggest_key_mode(session, study: Study, prepared: PreparedRatings) -> None:
    """Name the flags under which every unknown stimulus id would match one stimulus."""
    known, unknown = prepared.stimulus_ids()
    suggestion = key_mode_suggestion(session, study.id, known, unknown) if unknown else None
    if suggestion is None:
        return
    flags = f"--stimulus-key {suggestion.mode}"
    if suggestion.case_insensitive != study.key_case_insensitive:
        flags += " --ignore-case" if suggestion.case_insensitive else " --no-ignore-case"
    raw, path = next(iter(suggestion.matches.items()))
    print(f"hint: all {len(unknown)} unknown stimulus ids match exactly one stimulus by "
          f"{suggestion.describe()} (e.g. {raw!r} -> {path!r}); rerun with {flags} "
          "(saved for the study)", file=sys.stderr)


def run_list_batches(args: argparse.Namespace) -> int:
    factory = make_sessionmaker(make_engine(args.db))
    with factory() as session:
        study = session.scalar(select(Study).where(Study.name == args.study))
        if study is None:
            return _fail(f"no study named {args.study!r}")
        table = batches_frame(list_batches(session, study.id))
    if table.empty:
        print(f"{study.name}: no rating batches")
        return 0
    shown = ["batch", "file", "layout", "ratings", "raters", "stimuli", "rejected rows",
             "uploaded by", "uploaded at (UTC)", "excluded", "deleted at (UTC)", "scales"]
    print(table[shown].to_string(index=False))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from core.workflows.demo import DEMO_NAME, load_demo

    factory = make_sessionmaker(make_engine(args.db))
    with factory.begin() as session:
        study_id = load_demo(session, actor=Role.OPERATOR)
    print(f"demo study {DEMO_NAME!r} ready (id {study_id}); all of its data is synthetic")
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
