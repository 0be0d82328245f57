"""Model commands: list, download, register checkpoints and cards, detect faces, run, import.

``python -m core models`` lists every model with its checkpoint state; ``run`` runs models over
a study with plain progress lines (one per batch) so it can be logged on a GPU server.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.access import Role
from core.cli import summary
from core.faces.detection import (
    DETECTORS,
    DetectorUnavailable,
    download_mtcnn,
    install_mtcnn_from_wheel,
    mtcnn_status,
)
from core.io.tabular import TableError
from core.models import checkpoints, registry
from core.models.devices import DEVICE_CHOICES, DeviceError, device_label, resolve_device
from core.ratings.scales import parse_scale
from core.workflows import catalog, face_stage, inference
from core.workflows import predictions_import as pi
from core.workflows.stimuli import parse_code_map
from db.engine import make_engine, make_sessionmaker
from db.models import Study
from db.predictions import study_images


def register(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser("models", help=summary("models"))
    listing.set_defaults(handler=run_list)

    download = subparsers.add_parser("download", help=summary("download"))
    download.add_argument("model", help="model id (see `models`)")
    download.set_defaults(handler=run_download)

    local = subparsers.add_parser(
        "register-checkpoint", help=summary("register-checkpoint")
    )
    local.add_argument("model", help="model id")
    local.add_argument("file", type=Path, help="the checkpoint file")
    local.add_argument("--index", type=int, default=0, help="file slot of multi-file models (default 0)")
    local.set_defaults(handler=run_register_checkpoint)

    card_parser = subparsers.add_parser(
        "register-card", help=summary("register-card")
    )
    card_parser.add_argument("card", type=Path, help="model card (TOML or JSON)")
    card_parser.add_argument("file", type=Path, help="the ONNX or TorchScript file")
    card_parser.add_argument("--replace", action="store_true", help="replace a card model with this id")
    card_parser.set_defaults(handler=run_register_card)

    weights = subparsers.add_parser(
        "install-mtcnn",
        help=summary("install-mtcnn"),
    )
    weights.add_argument(
        "--wheel", type=Path,
        help="facenet_pytorch-2.6.0-*.whl fetched with `pip download facenet-pytorch==2.6.0 --no-deps`",
    )
    weights.set_defaults(handler=run_install_mtcnn)

    fan = subparsers.add_parser("install-fan68", help=summary("install-fan68"))
    fan.add_argument("--from", dest="folder", type=Path,
                     help="register s3fd-619a316812.pth and 2DFAN4-11f355bf06.pth.tar from this "
                          "folder (e.g. ~/.cache/torch/hub/checkpoints) instead of downloading")
    fan.set_defaults(handler=run_install_fan68)

    faces = subparsers.add_parser("detect-faces", help=summary("detect-faces"))
    _study_option(faces)
    _face_options(faces)
    faces.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    faces.set_defaults(handler=run_detect_faces)

    run = subparsers.add_parser("run", help=summary("run"))
    _study_option(run)
    run.add_argument("--model", action="append", required=True, metavar="ID",
                     help="model id (repeatable)")
    run.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    run.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--retry-failed", action="store_true", help="recompute stored failures")
    run.add_argument("--queue", action="store_true",
                     help="queue the run as a job for a worker (`python -m core worker`) and exit")
    run.add_argument("--aligned-crops", action="store_true",
                     help="Multitask-CNN: the pre-cropped stimuli are already aligned faces "
                          "(as run_pretrained_model.py takes them); other models ignore it")
    _face_options(run)
    run.set_defaults(handler=run_models)

    check = subparsers.add_parser("check-fp16", help=summary("check-fp16"))
    _study_option(check)
    check.add_argument("--model", required=True, metavar="ID")
    check.add_argument("--device", default="cuda")
    check.add_argument("-n", type=int, default=16, help="images to compare (default 16)")
    _face_options(check)
    check.set_defaults(handler=run_check_fp16)

    imported = subparsers.add_parser(
        "import-predictions", help=summary("import-predictions")
    )
    _study_option(imported)
    imported.add_argument("--model-id", required=True, help="id for the tool, e.g. facereader-9")
    imported.add_argument("file", type=Path, help="the prediction table")
    imported.add_argument("--map", action="append", default=[], metavar="ROLE=COLUMN",
                          help="override a column: stimulus, label, valence, arousal or an emotion")
    imported.add_argument("--va-range", metavar="MIN..MAX", help="range of valence and arousal")
    imported.add_argument("--valence-range", metavar="MIN..MAX", help="range of valence only")
    imported.add_argument("--arousal-range", metavar="MIN..MAX", help="range of arousal only")
    imported.add_argument("--score-range", metavar="MIN..MAX", help="range of scores (0..1 or 0..100)")
    imported.add_argument("--code", action="append", default=[], metavar="CODE=LABEL",
                          help="label code of the label column (repeatable)")
    imported.add_argument("--name", help="display name (default: the id)")
    imported.add_argument("--tool", default="", help="tool and version, e.g. 'FaceReader 9.0.8'")
    imported.add_argument("--pipeline", default="", help="pipeline label for tables")
    imported.add_argument("--notes", default="")
    imported.add_argument("--store-failures", action="store_true",
                          help="store rows with bad values as failed predictions instead of rejecting the file")
    imported.add_argument("--replace", action="store_true",
                          help="replace predictions imported earlier from another file")
    imported.set_defaults(handler=run_import_predictions)


def _study_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, help="study name")


def _face_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", choices=[d for d in DETECTORS if d != "precropped"],
                        default="mtcnn", help="face detector for stimuli that are not pre-cropped")
    parser.add_argument("--rule", choices=face_stage.CHOICE_RULES, default="largest",
                        help="which face to use when an image holds several")


def _factory(args: argparse.Namespace) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(args.db))


def _open_study(args: argparse.Namespace) -> tuple[sessionmaker[Session], int | None]:
    """The session factory of ``--db`` and the id of ``--study`` (None, with a message, if absent)."""
    factory = _factory(args)
    return factory, _study_id(factory, args.study)


def _study_id(factory: sessionmaker[Session], name: str) -> int | None:
    with factory() as session:
        study_id = session.scalar(select(Study.id).where(Study.name == name))
    if study_id is None:
        print(f"error: no study named {name!r}", file=sys.stderr)
    return study_id


def _error(message: object, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def progress_printer(label: str, unit: str = "images") -> Callable[[int, int], None]:
    """A progress callback printing one line per call: count, rate and time left."""
    started = time.perf_counter()

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        eta = inference.eta_seconds(elapsed, done, total)
        rate = f", {done / elapsed:.1f} {unit}/s" if done and elapsed > 0 else ""
        left = f", about {eta:.0f} s left" if eta is not None and done < total else ""
        print(f"{label}: {done}/{total} {unit}{rate}{left}", file=sys.stderr, flush=True)

    return report


# ------------------------------------------------------------------------------------ handlers


def run_list(args: argparse.Namespace) -> int:
    factory = _factory(args)
    with factory() as session:
        table = inference.model_overview(session)
    print(table[["model_id", "variant", "name", "pipeline", "source", "state", "license"]].to_string(index=False))
    return 0


def run_download(args: argparse.Namespace) -> int:
    try:
        spec = catalog.get_spec(args.model, None)
        bar = progress_printer(f"download {spec.id}", "bytes")
        paths = checkpoints.download(spec, progress=bar)
    except (registry.UnknownModelError, checkpoints.CheckpointError) as error:
        return _error(error)
    for path in paths:
        print(f"verified {path}")
    return 0


def run_install_mtcnn(args: argparse.Namespace) -> int:
    try:
        if args.wheel:
            paths = install_mtcnn_from_wheel(args.wheel)
        else:
            paths = download_mtcnn(progress=progress_printer("download MTCNN", "bytes"))
    except DetectorUnavailable as error:
        return _error(error)
    for path in paths:
        print(f"verified {path}")
    print(mtcnn_status().message)
    return 0


def run_install_fan68(args: argparse.Namespace) -> int:
    from core.faces import fan68

    try:
        if args.folder:
            paths = checkpoints.register_folder(fan68.WEIGHTS, args.folder)  # type: ignore[arg-type]
        else:
            paths = checkpoints.download(fan68.WEIGHTS, progress=progress_printer("download fan68", "bytes"))  # type: ignore[arg-type]
    except checkpoints.CheckpointError as error:
        return _error(error)
    for path in paths:
        print(f"pinned {path}")
    reason = fan68.unavailable_reason()
    print(reason or "fan68 detector ready")
    return 0 if paths else 1


def run_register_checkpoint(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        return _error(f"not a file: {args.file}", 2)
    try:
        spec = catalog.get_spec(args.model, None)
        if not 0 <= args.index < len(spec.checkpoints):
            return _error(f"{spec.id} has {len(spec.checkpoints)} checkpoint slot(s); --index must be 0..{len(spec.checkpoints) - 1}", 2)
        path = checkpoints.register_local(spec, args.index, args.file)
    except (registry.UnknownModelError, checkpoints.CheckpointError) as error:
        return _error(error)
    print(f"registered {path}; {checkpoints.checkpoint_status(spec).message}")
    return 0


def run_register_card(args: argparse.Namespace) -> int:
    for path in (args.card, args.file):
        if not path.is_file():
            return _error(f"not a file: {path}", 2)
    factory = _factory(args)
    try:
        with factory.begin() as session:
            spec = catalog.register_card(session, args.card.read_bytes(), args.file,
                                         replace=args.replace, actor=Role.OPERATOR)
    except (ValueError, checkpoints.CheckpointError) as error:
        return _error(error)
    print(f"registered card model {spec.id} ({spec.name})")
    return 0


def run_detect_faces(args: argparse.Namespace) -> int:
    factory, study_id = _open_study(args)
    if study_id is None:
        return 2
    with factory() as session:
        images = study_images(session, study_id)
    try:
        results = face_stage.ensure_faces(
            factory, [image.sha256 for image in images], detector=args.detector, rule=args.rule,
            precropped={image.sha256 for image in images if image.precropped},
            progress=progress_printer(f"faces ({args.detector})"), device=resolve_device(args.device),
            actor=Role.OPERATOR,
        )
    except (DetectorUnavailable, DeviceError) as error:
        return _error(error)
    counts: dict[str, int] = {}
    for result in results.values():
        counts[result.status] = counts.get(result.status, 0) + 1
    print(", ".join(f"{status}: {n}" for status, n in sorted(counts.items())))
    return 0


def run_models(args: argparse.Namespace) -> int:
    factory, study_id = _open_study(args)
    if study_id is None:
        return 2
    if args.queue:
        return _queue_run(factory, study_id, args)
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        return _error(error, 2)
    print(f"device: {device_label(device)}{' fp16' if args.fp16 else ''}", file=sys.stderr)
    try:
        reports = inference.run_models(
            factory, study_id, args.model, device=device, half=args.fp16,
            batch_size=args.batch_size, detector=args.detector, rule=args.rule,
            retry_failed=args.retry_failed, aligned_crops=args.aligned_crops,
            on_model=lambda model_id, index, count: print(
                f"[{index + 1}/{count}] {model_id}", file=sys.stderr),
            progress_for=lambda model_id: progress_printer(model_id),
            face_progress=progress_printer("faces"),
            actor=Role.OPERATOR,
        )
    except (DeviceError, DetectorUnavailable, ValueError) as error:
        return _error(error, 2)
    for report in reports:
        print(report.summary())
    return 1 if any(report.error for report in reports) else 0


def _queue_run(factory: sessionmaker[Session], study_id: int, args: argparse.Namespace) -> int:
    from core.workflows import jobs

    params = {"models": args.model, "half": args.fp16, "batch_size": args.batch_size,
              "detector": args.detector, "rule": args.rule, "retry_failed": args.retry_failed,
              "aligned_crops": args.aligned_crops}
    job_id = jobs.enqueue(factory, "model_run", study_id, params, queued_by="cli",
                          actor=Role.OPERATOR)
    print(f"queued job {job_id}; a worker runs it (`python -m core worker`), "
          f"`python -m core jobs --study {args.study}` shows its progress")
    return 0


def run_check_fp16(args: argparse.Namespace) -> int:
    factory, study_id = _open_study(args)
    if study_id is None:
        return 2
    try:
        check = inference.check_half_precision(
            factory, study_id, args.model, device=args.device, n=args.n,
            detector=args.detector, rule=args.rule, actor=Role.OPERATOR,
        )
    except (DeviceError, checkpoints.CheckpointError, inference.RunError, LookupError) as error:
        return _error(error)
    print(f"{args.model} fp16 vs fp32: {check.summary()}")
    return 0


def run_import_predictions(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        return _error(f"not a file: {args.file}", 2)
    factory, study_id = _open_study(args)
    if study_id is None:
        return 2
    data = args.file.read_bytes()
    try:
        with factory() as session:
            mapping = pi.preview(session, study_id, args.file.name, data).mapping
        _apply_import_options(mapping, args)
        with factory() as session:
            checked = pi.preview(session, study_id, args.file.name, data, mapping)
        _print_preview(checked)
        result = pi.import_predictions(
            factory, study_id, args.model_id, args.file.name, data, mapping=mapping,
            name=args.name, pipeline=args.pipeline, tool=args.tool, notes=args.notes,
            store_failures=args.store_failures, replace=args.replace,
            actor=Role.OPERATOR,
        )
    except pi.ImportRejected as rejected:
        return _error(rejected)
    except (TableError, ValueError) as error:
        return _error(error, 2)
    print(f"{result.model_id}: {result.stored} predictions stored, {result.failed} stored as failures"
          + (f", rows not stored: {result.not_stored_rows}" if result.not_stored_rows else ""))
    return 0


def _apply_import_options(mapping: pi.PredictionMapping, args: argparse.Namespace) -> None:
    pi.apply_overrides(mapping, args.map)
    if args.va_range:
        mapping.valence_range = mapping.arousal_range = parse_scale(args.va_range)
    if args.valence_range:
        mapping.valence_range = parse_scale(args.valence_range)
    if args.arousal_range:
        mapping.arousal_range = parse_scale(args.arousal_range)
    if args.score_range:
        mapping.score_range = parse_scale(args.score_range)
    if args.code:
        mapping.label_codes = parse_code_map(",".join(args.code))


def _print_preview(preview: pi.ImportPreview) -> None:
    mapping = preview.mapping
    scores = ", ".join(f"{label}={column}" for label, column in mapping.scores.items()) or "-"
    print(f"stimulus={mapping.stimulus} label={mapping.label or '-'} valence={mapping.valence or '-'} "
          f"({mapping.valence_range.low:g}..{mapping.valence_range.high:g}) arousal={mapping.arousal or '-'} "
          f"({mapping.arousal_range.low:g}..{mapping.arousal_range.high:g}) scores: {scores} "
          f"({mapping.score_range.low:g}..{mapping.score_range.high:g})")
    for hint in preview.hints:
        print(f"note: {hint}", file=sys.stderr)
    for issue in preview.issues.itertuples():
        print(f"row {issue.row}: {pi.ISSUE_KINDS[issue.kind]}: {issue.message}")
