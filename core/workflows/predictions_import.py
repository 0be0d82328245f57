"""Import precomputed predictions (FaceReader, py-feat, AFFDEX, any tool) as a model.

A prediction file has one row per stimulus with any of: category scores (one column per emotion,
named as the tool names it: FaceReader ``Happy``, py-feat ``happiness``, AFFDEX ``Joy``), a
label column, valence and arousal on a declared range. Columns are detected from their headers
and can be overridden; every row is validated and each problem is reported with its row number
(header = row 1). Rows are stored as Prediction rows under the user's model id with the file's
sha256 as "checkpoint", so the analysis treats the tool like any other model; the file itself is
kept in blob storage.

Scores are stored renormalised to sum to one over the labels the tool provides (FaceReader
intensities are independent 0..1 values); the raw scores are kept in ``extras["raw_scores"]``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from core.access import Action, Role, require
from core.io.storage import sha256_bytes, store_bytes
from core.io.tabular import parse_number, read_table
from core.models import registry
from core.ratings.labels import CANONICAL, to_canonical
from core.ratings.layouts import ROLE_NAMES, StimulusIndex, header_token
from core.ratings.scales import Scale, normalise, out_of_scale
from db.models import Prediction, RegisteredModel
from db.predictions import CacheKey, PredictionRow, save_predictions, upsert_registered_model
from db.stimuli import get_study, key_index, stimulus_rows

IMPORTED = "imported"  # preprocessing and detector of every imported prediction
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
ISSUE_KINDS: dict[str, str] = {
    "unknown_stimulus": "unknown stimulus",
    "unknown_label": "unknown label",
    "not_a_number": "not a number",
    "out_of_range": "out-of-range value",
    "incomplete_scores": "some scores missing",
    "zero_scores": "all scores are zero",
    "empty": "no prediction in the row",
    "duplicate": "stimulus already on an earlier row",
}
# Kinds that say nothing about a stored stimulus's prediction; such rows are never stored.
UNSTORABLE = frozenset({"unknown_stimulus", "duplicate"})
ISSUE_COLUMNS = ["row", "column", "kind", "value", "message"]
STIMULUS_HEADERS = (*ROLE_NAMES["stimulus"], "input", "source", "path", "name", "video", "frame")
LABEL_HEADERS = (
    *ROLE_NAMES["emotion"], "predicted", "prediction", "predicted_label", "predicted_emotion",
    "dominant_emotion", "dominant_expression", "top_emotion", "class",
)
# Words tools add around an emotion name in score headers ("Joy (Evidence)", "p_happy").
SCORE_DECORATIONS = frozenset({
    "p", "prob", "probability", "score", "scores", "evidence", "intensity", "mean", "value",
    "likelihood", "emotion", "pred",
})
UNIT = Scale(0.0, 1.0, "0..1")
PERCENT = Scale(0.0, 100.0, "0..100")


class ImportRejected(ValueError):
    """The file has problems and nothing was stored; ``preview`` holds the row report."""

    def __init__(self, preview: ImportPreview) -> None:
        self.preview = preview
        super().__init__(
            f"{preview.file_name}: {len(preview.issues)} problem(s) on {len(preview.bad_rows)} row(s); "
            "nothing was imported. Fix the rows (see the report) or store them as failures."
        )


@dataclass
class PredictionMapping:
    """Which column holds what; ``scores`` maps canonical label -> column."""

    stimulus: str
    label: str | None = None
    scores: dict[str, str] = field(default_factory=dict)
    valence: str | None = None
    arousal: str | None = None
    valence_range: Scale = field(default_factory=lambda: Scale(-1.0, 1.0, "-1..1"))
    arousal_range: Scale = field(default_factory=lambda: Scale(-1.0, 1.0, "-1..1"))
    score_range: Scale = UNIT
    label_codes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("valence_range", "arousal_range", "score_range"):
            data[name] = getattr(self, name).to_dict()
        return data

    @property
    def labels(self) -> list[str]:
        """Canonical labels of the score columns, in canonical order."""
        return [name for name in CANONICAL if name in self.scores]


@dataclass
class ParsedRow:
    row: int
    sha256: str | None
    stimulus: str
    label: str | None = None
    probs: dict[str, float] | None = None
    raw_scores: dict[str, float] | None = None
    valence: float | None = None
    arousal: float | None = None
    raw_valence: float | None = None
    raw_arousal: float | None = None
    issues: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImportPreview:
    file_name: str
    sha256: str
    mapping: PredictionMapping
    rows: list[ParsedRow]
    hints: list[str] = field(default_factory=list)

    @property
    def issues(self) -> pd.DataFrame:
        records = [issue for row in self.rows for issue in row.issues]
        return pd.DataFrame(records, columns=ISSUE_COLUMNS)

    @property
    def bad_rows(self) -> list[int]:
        return [row.row for row in self.rows if row.issues]

    @property
    def ok(self) -> bool:
        return not self.bad_rows

    def table(self) -> pd.DataFrame:
        """One line per file row: the parsed values and its problems (for the page and CLI)."""
        return pd.DataFrame([
            {
                "row": row.row, "stimulus": row.stimulus, "label": row.label,
                "valence": row.valence, "arousal": row.arousal,
                "problems": "; ".join(issue["message"] for issue in row.issues),
            }
            for row in self.rows
        ])


@dataclass(frozen=True)
class ImportResult:
    model_id: str
    stored: int
    failed: int
    not_stored_rows: list[int]
    sha256: str


# --------------------------------------------------------------------------- column detection


def score_label(header: str) -> str | None:
    """Canonical emotion named by a score header (``Happy``, ``joy (evidence)``, ``p_anger``)."""
    words = [w for w in re.split(r"[^\w]+|_", header_token(header)) if w]
    kept = [w for w in words if w not in SCORE_DECORATIONS]
    return to_canonical(" ".join(kept)) if kept else None


def detect_mapping(frame: pd.DataFrame, index: StimulusIndex | None = None) -> PredictionMapping:
    """Best guess of the mapping, shown to the user for confirmation."""
    columns = [str(c) for c in frame.columns]
    tokens = {column: header_token(column) for column in columns}
    stimulus = _stimulus_column(frame, columns, tokens, index)
    label = next((c for c in columns if c != stimulus and tokens[c] in LABEL_HEADERS), None)
    valence = next((c for c in columns if "valence" in tokens[c]), None)
    arousal = next((c for c in columns if "arousal" in tokens[c]), None)
    scores: dict[str, str] = {}
    for column in columns:
        name = score_label(column)
        if column not in (stimulus, label, valence, arousal) and name and name not in scores:
            scores[name] = column
    mapping = PredictionMapping(stimulus, label, scores, valence, arousal)
    mapping.score_range = _score_range(frame, scores)
    return mapping


def _stimulus_column(
    frame: pd.DataFrame, columns: list[str], tokens: dict[str, str], index: StimulusIndex | None
) -> str:
    named = next((c for c in columns if tokens[c] in STIMULUS_HEADERS), None)
    if named or index is None:
        return named or columns[0]
    shares = {c: index.resolve(frame[c]).notna().mean() for c in columns}
    return max(shares, key=shares.get)


def _score_range(frame: pd.DataFrame, scores: dict[str, str]) -> Scale:
    values = [parse_number(v) for column in scores.values() for v in frame[column]]
    numbers = [v for v in values if v is not None]
    return PERCENT if numbers and max(numbers) > 1 and max(numbers) <= 100 else UNIT


def mapping_problems(frame: pd.DataFrame, mapping: PredictionMapping) -> list[str]:
    """What makes a mapping unusable (missing columns, nothing to import)."""
    used = [mapping.stimulus, mapping.label, mapping.valence, mapping.arousal, *mapping.scores.values()]
    missing = [c for c in used if c is not None and c not in frame.columns]
    problems = [f"column {c!r} is not in the file (columns: {', '.join(map(str, frame.columns))})"
                for c in missing]
    if not (mapping.label or mapping.scores or mapping.valence or mapping.arousal):
        problems.append("map at least one of: category scores, a label column, valence, arousal")
    unknown = [label for label in mapping.scores if label not in CANONICAL]
    if unknown:
        problems.append(f"score labels not in the canonical vocabulary: {unknown}")
    return problems


def apply_overrides(mapping: PredictionMapping, items: list[str]) -> PredictionMapping:
    """CLI ``--map ROLE=COLUMN`` overrides: stimulus, label, valence, arousal or an emotion
    name (score column); an empty COLUMN unmaps the role."""
    for item in items:
        role, sep, column = item.partition("=")
        role, column = role.strip(), column.strip() or None
        if not sep or not role:
            raise ValueError(f"bad --map {item!r}: write ROLE=COLUMN, e.g. valence=Valence")
        if role.casefold() in ("stimulus", "label", "valence", "arousal"):
            if role.casefold() == "stimulus" and column is None:
                raise ValueError("the stimulus column cannot be unmapped")
            setattr(mapping, role.casefold(), column)
            continue
        label = to_canonical(role)
        if label is None:
            raise ValueError(
                f"bad --map {item!r}: {role!r} is neither stimulus/label/valence/arousal "
                f"nor an emotion ({', '.join(CANONICAL)})"
            )
        mapping.scores.pop(label, None)
        if column:
            mapping.scores[label] = column
    return mapping


# ---------------------------------------------------------------------------------- validation


def study_index(session: Session, study_id: int) -> tuple[StimulusIndex, dict[int, str]]:
    """The study's stimulus key index and stimulus id -> sha256."""
    study = get_study(session, study_id)
    index = StimulusIndex.build(key_index(session, study_id), study.key_case_insensitive, study.stimulus_key)
    return index, {sid: sha for sid, _, sha in stimulus_rows(session, study_id)}


def preview(
    session: Session, study_id: int, file_name: str, data: bytes,
    mapping: PredictionMapping | None = None,
) -> ImportPreview:
    """Read, map and validate a prediction file without storing anything.

    Raises core.io.tabular.TableError for unreadable files and ValueError for unusable mappings.
    """
    frame = read_table(file_name, data)
    index, shas = study_index(session, study_id)
    mapping = mapping or detect_mapping(frame, index)
    problems = mapping_problems(frame, mapping)
    if problems:
        raise ValueError(f"{file_name}: " + "; ".join(problems))
    stimulus_ids = index.resolve(frame[mapping.stimulus])
    rows = []
    first_row: dict[str, int] = {}
    for position, (label, record) in enumerate(frame.iterrows()):
        stimulus_id = stimulus_ids.iloc[position]
        sha = None if pd.isna(stimulus_id) else shas[int(stimulus_id)]
        parsed = _parse_row(int(label) + 2, record, mapping, sha)
        if sha is not None and sha in first_row:
            _issue(parsed, mapping.stimulus, "duplicate", record[mapping.stimulus],
                   f"stimulus {record[mapping.stimulus]!r} is already on row {first_row[sha]}")
        elif sha is not None:
            first_row[sha] = parsed.row
        rows.append(parsed)
    result = ImportPreview(file_name, sha256_bytes(data), mapping, rows)
    result.hints = [*frame.attrs.get("notes", []), *_range_hints(result)]
    return result


def _parse_row(row: int, record: pd.Series, mapping: PredictionMapping, sha: str | None) -> ParsedRow:
    key = str(record[mapping.stimulus])
    parsed = ParsedRow(row, sha, key)
    if sha is None:
        message = f"{key!r} is not a stimulus of this study" if key else "the stimulus cell is empty"
        _issue(parsed, mapping.stimulus, "unknown_stimulus", key, message)
    _parse_scores(parsed, record, mapping)
    _parse_label(parsed, record, mapping)
    for dimension in ("valence", "arousal"):
        _parse_dimension(parsed, record, mapping, dimension)
    has_value = any(v is not None for v in (parsed.label, parsed.valence, parsed.arousal, parsed.probs))
    if not has_value and not parsed.issues:
        _issue(parsed, None, "empty", "", "the row has no label, scores, valence or arousal")
    return parsed


def _parse_scores(parsed: ParsedRow, record: pd.Series, mapping: PredictionMapping) -> None:
    if not mapping.scores:
        return
    raw: dict[str, float] = {}
    for label, column in mapping.scores.items():
        value = _number(parsed, record, column)
        if value is None:
            continue
        if out_of_scale(value, mapping.score_range):
            _issue(parsed, column, "out_of_range", record[column],
                   f"score {value:g} lies outside {mapping.score_range.label}")
            continue
        raw[label] = value
    blanks = [c for c in mapping.scores.values() if record[c] == ""]
    if blanks and len(blanks) < len(mapping.scores):
        _issue(parsed, blanks[0], "incomplete_scores", "",
               f"score cells are empty in {', '.join(blanks)} while other scores are given")
    if parsed.issues or not raw:
        return
    scaled = {label: (value - mapping.score_range.low) / (mapping.score_range.high - mapping.score_range.low)
              for label, value in raw.items()}
    total = sum(scaled.values())
    if total <= 0:
        _issue(parsed, None, "zero_scores", "", "every score is zero, so no label can be read")
        return
    parsed.raw_scores = raw
    parsed.probs = {label: value / total for label, value in scaled.items()}
    parsed.label = max(parsed.probs, key=parsed.probs.get)


def _parse_label(parsed: ParsedRow, record: pd.Series, mapping: PredictionMapping) -> None:
    if not mapping.label or record[mapping.label] == "":
        return
    text = record[mapping.label]
    label = to_canonical(text, mapping.label_codes or None)
    if label is None:
        _issue(parsed, mapping.label, "unknown_label", text,
               f"label {text!r} is not one of {', '.join(CANONICAL)} (or a synonym); "
               "declare a code map if the tool writes codes")
    else:
        parsed.label = label


def _parse_dimension(parsed: ParsedRow, record: pd.Series, mapping: PredictionMapping, dimension: str) -> None:
    column = getattr(mapping, dimension)
    if not column:
        return
    value = _number(parsed, record, column)
    if value is None:
        return
    scale: Scale = getattr(mapping, f"{dimension}_range")
    if out_of_scale(value, scale):
        _issue(parsed, column, "out_of_range", record[column],
               f"{dimension} {value:g} lies outside the declared range {scale.low:g}..{scale.high:g}")
        return
    setattr(parsed, f"raw_{dimension}", value)
    setattr(parsed, dimension, float(normalise(value, scale)))


def _number(parsed: ParsedRow, record: pd.Series, column: str) -> float | None:
    text = record[column]
    if text == "":
        return None
    value = parse_number(text)
    if value is None:
        _issue(parsed, column, "not_a_number", text,
               f"{column} is {text!r}, not a number")
    return value


def _issue(parsed: ParsedRow, column: str | None, kind: str, value: object, message: str) -> None:
    parsed.issues.append({"row": parsed.row, "column": column, "kind": kind, "value": str(value),
                          "message": message})


def _range_hints(result: ImportPreview) -> list[str]:
    """Point at declared VA ranges that the observed values make doubtful (never auto-changed)."""
    hints = []
    for dimension in ("valence", "arousal"):
        values = [getattr(row, f"raw_{dimension}") for row in result.rows]
        values = [v for v in values if v is not None]
        scale: Scale = getattr(result.mapping, f"{dimension}_range")
        if values and min(values) >= 0 and scale.low < 0:
            hints.append(
                f"{dimension}: every value is >= 0 (observed {min(values):g}..{max(values):g}) but "
                f"the declared range is {scale.low:g}..{scale.high:g}; FaceReader's arousal, for "
                "example, is 0..1. Check the tool's documentation and declare its range."
            )
    return hints


# ------------------------------------------------------------------------------------- storing


def check_model_id(session: Session, model_id: str) -> None:
    """Refuse ids that are malformed or belong to a runnable (built-in or card) model."""
    if not MODEL_ID.match(model_id or ""):
        raise ValueError(
            f"model id {model_id!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. facereader-9)"
        )
    if model_id in registry.builtin_specs():
        raise ValueError(f"model id {model_id!r} is a built-in model; choose another id")
    row = session.get(RegisteredModel, model_id)
    if row is not None and row.source != IMPORTED:
        raise ValueError(f"model id {model_id!r} is a registered {row.source} model; choose another id")


def import_predictions(
    factory: sessionmaker[Session],
    study_id: int,
    model_id: str,
    file_name: str,
    data: bytes,
    *,
    mapping: PredictionMapping | None = None,
    name: str | None = None,
    pipeline: str = "",
    tool: str = "",
    notes: str = "",
    store_failures: bool = False,
    replace: bool = False,
    actor: Role,
) -> ImportResult:
    """Validate and store a prediction file as the imported model ``model_id``.

    Any row problem rejects the whole file (ImportRejected) unless ``store_failures``: then rows
    of known stimuli with bad values are stored as failed predictions with the reason, and rows
    that name no stimulus of the study (or repeat one) are listed in ``not_stored_rows``.
    Importing a different file under an existing id needs ``replace`` (its earlier predictions
    are removed; the earlier file stays in blob storage and in the card's history).
    """
    require(actor, Action.UPLOAD_PREDICTIONS)
    with factory.begin() as session:
        check_model_id(session, model_id)
        result = preview(session, study_id, file_name, data, mapping)
        if not result.ok and not store_failures:
            raise ImportRejected(result)
        existing = session.get(RegisteredModel, model_id)
        history = _history(existing, result.sha256, result.mapping.to_dict(), replace, model_id)
        if existing is not None and replace:
            session.execute(delete(Prediction).where(
                Prediction.model_id == model_id, Prediction.study_id == study_id
            ))
        rows = [_prediction_row(row) for row in result.rows if not (UNSTORABLE & _kinds(row))]
        save_predictions(session, CacheKey(model_id, result.sha256, IMPORTED), rows, study_id, actor=actor)
        store_bytes(data)
        card = _card(result, model_id, name, pipeline, tool, notes, rows, history)
        upsert_registered_model(session, model_id, source=IMPORTED, card=card,
                                checkpoint_sha256=result.sha256, actor=actor)
    return ImportResult(
        model_id,
        stored=sum(row.status == "ok" for row in rows),
        failed=sum(row.status == "error" for row in rows),
        not_stored_rows=[row.row for row in result.rows if UNSTORABLE & _kinds(row)],
        sha256=result.sha256,
    )


def _kinds(row: ParsedRow) -> set[str]:
    return {issue["kind"] for issue in row.issues}


def _history(
    existing: RegisteredModel | None, sha256: str, mapping: dict, replace: bool, model_id: str
) -> list[dict]:
    if existing is None:
        return []
    card = existing.card or {}
    earlier = list(card.get("history", []))
    same_import = existing.checkpoint_sha256 == sha256 and card.get("mapping") == mapping
    if same_import:
        return earlier
    if not replace:
        what = "with another column mapping or range" if existing.checkpoint_sha256 == sha256 else (
            f"from {card.get('source_file', 'another file')}")
        raise ValueError(
            f"model {model_id!r} already holds predictions imported {what}; "
            "import under a new id or replace them"
        )
    return earlier + [{"source_file": card.get("source_file"), "source_sha256": existing.checkpoint_sha256,
                       "imported_at": card.get("imported_at")}]


def _observed_labels(rows: list[PredictionRow]) -> list[str]:
    seen = {row.label for row in rows}
    return [name for name in CANONICAL if name in seen]


def _prediction_row(row: ParsedRow) -> PredictionRow:
    if row.issues:
        return PredictionRow(row.sha256, IMPORTED, status="error",
                             error="; ".join(issue["message"] for issue in row.issues))
    extras = {"file_row": row.row}
    if row.raw_scores:
        extras["raw_scores"] = row.raw_scores
    for dimension in ("valence", "arousal"):
        raw = getattr(row, f"raw_{dimension}")
        if raw is not None:
            extras[f"raw_{dimension}"] = raw
    return PredictionRow(row.sha256, IMPORTED, label=row.label, probs=row.probs,
                         valence=row.valence, arousal=row.arousal, extras=extras)


def _card(
    result: ImportPreview, model_id: str, name: str | None, pipeline: str, tool: str, notes: str,
    rows: list[PredictionRow], history: list[dict],
) -> dict[str, Any]:
    mapping = result.mapping
    return {
        "name": name or model_id,
        "pipeline": pipeline or f"imported ({tool or name or model_id})",
        "tool": tool,
        "notes": notes,
        "labels": mapping.labels if mapping.scores else _observed_labels(rows),
        "va": bool(mapping.valence or mapping.arousal),
        "valence": mapping.valence is not None,
        "arousal": mapping.arousal is not None,
        "mapping": mapping.to_dict(),
        "source_file": result.file_name,
        "source_sha256": result.sha256,
        "rows": len(result.rows),
        "stored": sum(row.status == "ok" for row in rows),
        "failed": sum(row.status == "error" for row in rows),
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "history": history,
    }
