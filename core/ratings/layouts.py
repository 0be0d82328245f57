"""Rating files: layout and column detection, label and scale mapping, validation, conversion.

A rating file (read by :func:`core.io.tabular.read_table`) comes in one of four layouts:

- ``long``: one row per rater x stimulus; columns for rater, stimulus, emotion, valence, arousal.
- ``wide_rater``: one row per rater; one column per stimulus x dimension, named like
  ``img01_valence`` or ``img01.png:arousal`` (or just the stimulus when the file holds a
  single declared dimension).
- ``wide_stimulus``: one row per stimulus; one column per rater (``P01``; ``P01_valence`` when
  several dimensions share the file).
- ``votes``: one row per stimulus, one count column per emotion (FER+ style). Counts become
  anonymous raters ``votes#<batch>:<k>`` (k = 1..n within the stimulus) so that per-stimulus
  reliability statistics work; vote raters of different stimuli are not the same person.

Whatever the layout, the file becomes long canonical rows (one per rater x stimulus) with the
emotion mapped onto :data:`core.ratings.labels.CANONICAL` and valence/arousal normalised from the
declared scale, raw values kept. Validation reports every bad row with its row number in the
file (header = row 1) and the reason; a row with any problem is rejected as a whole, so the
rejected rows can be fixed and uploaded again as they are. A rater rating a stimulus twice is
kept as a repeat (see :mod:`core.ratings.repeats`) unless the batch's repeat policy refuses it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.io.spreadsheet import csv_bytes
from core.io.tabular import parse_number
from core.ratings.labels import CANONICAL, normalise_token, to_canonical
from core.ratings.repeats import DEFAULT_POLICY, POLICY_KEY, check_policy, number_occurrences
from core.ratings.scales import Scale, normalise, out_of_scale
from core.ratings.stimulus_keys import KEY_MODES, lookup_key

LAYOUTS: dict[str, str] = {
    "long": "long: one row per rater x stimulus",
    "wide_rater": "wide: one row per rater, columns per stimulus (x dimension)",
    "wide_stimulus": "wide: one row per stimulus, columns per rater (x dimension)",
    "votes": "vote counts: one row per stimulus, one count column per emotion",
}
DIMENSIONS: tuple[str, ...] = ("emotion", "valence", "arousal")
NUMERIC_DIMENSIONS: tuple[str, ...] = ("valence", "arousal")
ROLES: tuple[str, ...] = ("rater", "stimulus", *DIMENSIONS)
ID_ROLE = {"wide_rater": "rater", "wide_stimulus": "stimulus", "votes": "stimulus"}

ERROR_KINDS: dict[str, str] = {
    "missing": "missing required field",
    "unknown_stimulus": "unknown stimulus",
    "unknown_label": "unknown label",
    "non_numeric": "not a number",
    "out_of_scale": "out-of-scale value",
    "duplicate": "duplicate rater x stimulus",
    "too_long": "value too long",
}
ERROR_COLUMNS = ["row", "column", "kind", "value", "message"]
RATING_COLUMNS = [
    "row", "stimulus_id", "stimulus_key", "rater", "emotion", "emotion_raw",
    "valence", "arousal", "valence_raw", "arousal_raw",
]
VOTE_RATER = "votes#{batch}:{k}"
PENDING_BATCH = "new"
# A single vote cell above this is a typo or a bomb, not a count of human raters.
MAX_VOTES_PER_CELL = 10_000
# Votes expand to one rating each; FER+ (35,887 images x 10 votes) is about a third of this.
MAX_VOTES_TOTAL = 1_000_000
MAX_RATER_LENGTH = 200  # Rating.rater column width

# Header tokens (see :func:`header_token`) that name a role in a long file.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "rater": (
        "rater", "rater_id", "raterid", "participant", "participant_id", "participantid",
        "subject", "subject_id", "respondent", "respondent_id", "pid", "worker", "worker_id",
        "workerid", "annotator", "judge", "coder", "observer", "user", "user_id",
        "평가자", "참가자", "응답자",
    ),
    "stimulus": (
        "stimulus", "stimulus_id", "stim", "stim_id", "image", "image_name", "image_id",
        "image_file", "img", "file", "file_name", "filename", "face", "picture", "photo", "item",
        "자극", "이미지", "사진", "파일",
    ),
    "emotion": (
        "emotion", "emotion_label", "label", "category", "response", "choice", "expression",
        "emo", "감정", "정서",
    ),
    "valence": ("valence", "val", "v", "pleasure", "valence_rating", "정서가", "유인가", "쾌"),
    "arousal": ("arousal", "aro", "a", "activation", "arousal_rating", "각성", "각성도"),
}
# Dimension names recognised inside wide headers; single letters are left out because
# stimulus or rater ids such as ``face_a`` would be misread.
HEADER_DIMENSIONS: dict[str, tuple[str, ...]] = {
    dim: tuple(name for name in ROLE_NAMES[dim] if len(name) > 1) for dim in DIMENSIONS
}
# Columns that describe the stimulus or session, never a rater (auto-ignored in wide files).
NON_RATING_COLUMNS = frozenset({
    "usage", "note", "notes", "comment", "comments", "timestamp", "date", "time", "duration",
    "set", "stimulus_set", "condition", "order", "trial", "intended", "intended_emotion",
    "gender", "poser_gender", "age", "age_group", "ethnicity", "unknown", "nf", "total",
    # survey tools' response metadata (Qualtrics, LimeSurvey, SoSci Survey)
    "startdate", "enddate", "recordeddate", "status", "ipaddress", "progress", "finished",
    "recipientlastname", "recipientfirstname", "recipientemail", "externalreference",
    "locationlatitude", "locationlongitude", "distributionchannel", "userlanguage",
    "submitdate", "lastpage", "startlanguage", "seed", "interviewtime",
})
UNIT_NOTE = re.compile(r"_?\(.*\)$")  # "Duration (in seconds)" is a duration
SEPARATORS = "_:.|/- "
IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|webp|bmp|tiff?)$", re.IGNORECASE)


class MappingError(ValueError):
    """The declared mapping cannot be applied; ``problems`` lists what the user must fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class StimulusIndex:
    """How a study's stimuli are named in rating files: normalised key -> stimulus id.

    Keys and lookups go through :func:`core.ratings.stimulus_keys.lookup_key` (NFC, ``/`` separators,
    the study's key mode and case folding), as for metadata files.
    """

    keys: dict[str, int]
    case_insensitive: bool = True
    mode: str = "name"

    @classmethod
    def build(
        cls, index: dict[str, int], case_insensitive: bool = True, mode: str = "name"
    ) -> StimulusIndex:
        keys = {lookup_key(key, mode, case_insensitive): sid for key, sid in index.items()}
        return cls(keys, case_insensitive, mode)

    def normalise(self, key: str) -> str:
        return lookup_key(key, self.mode, self.case_insensitive)

    def resolve(self, keys: pd.Series) -> pd.Series:
        """Stimulus ids for raw keys (nullable Int64; <NA> where unknown)."""
        unique = pd.unique(keys)
        lookup = {key: self.keys.get(self.normalise(key)) for key in unique}
        return keys.map(lookup).astype("Int64")

    def describe(self) -> str:
        example = next(iter(self.keys), None)
        how = KEY_MODES.get(self.mode, self.mode).split(" (")[0]
        text = f"this study names stimuli by {how}"
        return text + (f", e.g. {example!r}" if example else " and has no stimuli yet")


@dataclass
class ColumnMapping:
    """Which columns play which role; detected by :func:`detect_mapping`, editable by the user.

    ``columns`` maps a role (rater, stimulus, emotion, valence, arousal) to a column name; wide
    and vote layouts use only their id role. ``dimension`` is the dimension of wide columns
    whose header names none. ``ignored`` columns are left out (and listed as such).
    """

    layout: str
    columns: dict[str, str] = field(default_factory=dict)
    dimension: str | None = None
    ignored: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout, "columns": dict(self.columns),
            "dimension": self.dimension, "ignored": list(self.ignored),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnMapping:
        return cls(
            data["layout"], dict(data.get("columns", {})), data.get("dimension"),
            list(data.get("ignored", [])),
        )


@dataclass
class PreparedRatings:
    """Result of :func:`prepare_ratings`: valid canonical rows, the error report, provenance."""

    ratings: pd.DataFrame  # RATING_COLUMNS + occurrence, valid rows only
    errors: pd.DataFrame  # ERROR_COLUMNS, one line per problem (a row can have several)
    layout: str
    n_file_rows: int
    mapping: dict[str, Any]  # ColumnMapping.to_dict() plus the wide/vote "cells" as used
    scales: dict[str, dict[str, Any]]
    label_map: dict[str, str]

    @property
    def rejected_rows(self) -> list[int]:
        return sorted(set(self.errors["row"].tolist()))

    @property
    def ok(self) -> bool:
        return self.errors.empty

    def stimulus_ids(self) -> tuple[list[str], list[str]]:
        """The stimulus ids as the file writes them: (matched, unknown)."""
        unknown = self.errors.loc[self.errors["kind"] == "unknown_stimulus", "value"]
        return sorted(set(self.ratings["stimulus_key"].astype(str))), sorted(set(unknown.astype(str)))


# ---------------------------------------------------------------- header and column detection


def header_token(text: object) -> str:
    """``'Participant ID'`` -> ``'participant_id'``: case-folded, separators unified."""
    return re.sub(r"[\s\-.]+", "_", normalise_token(str(text))).strip("_")


def is_non_rating_column(header: object) -> bool:
    """A column a wide file carries besides the ratings: notes, dates, survey metadata."""
    return UNIT_NOTE.sub("", header_token(header)) in NON_RATING_COLUMNS


def split_cell_header(header: str) -> tuple[str, str | None]:
    """Split a wide header into (stimulus or rater, dimension): ``img01.png:arousal`` ->
    (``img01.png``, ``arousal``), ``valence_img01`` -> (``img01``, ``valence``).

    Returns (header, None) when no dimension name is attached by a separator.
    """
    text = unicodedata.normalize("NFC", str(header)).strip()
    lowered = text.casefold()
    for dim, names in HEADER_DIMENSIONS.items():
        for name in sorted(names, key=len, reverse=True):
            cut = len(lowered) - len(name)
            if cut > 1 and lowered.endswith(name) and lowered[cut - 1] in SEPARATORS:
                return text[: cut - 1].rstrip(SEPARATORS), dim
            if len(name) > 2 and len(lowered) > len(name) + 1 and lowered.startswith(name):
                if lowered[len(name)] in SEPARATORS:
                    return text[len(name) + 1:].lstrip(SEPARATORS), dim
    return text, None


def find_role_columns(columns: Iterable[str]) -> dict[str, str]:
    """Role -> first column whose header names it (``Participant``, ``Image name``, ``V`` ...)."""
    found: dict[str, str] = {}
    for column in columns:
        token = header_token(column)
        for role, names in ROLE_NAMES.items():
            if role not in found and token in names and column not in found.values():
                found[role] = column
    return found


def vote_columns(
    columns: Iterable[str], codes: dict[str, str] | None, skip: Iterable[str] = ()
) -> dict[str, str]:
    """Column -> canonical label for every column named after an emotion (or a declared code)."""
    skipped = set(skip)
    found = {}
    for column in columns:
        label = to_canonical(column, codes)
        if column not in skipped and label is not None:
            found[column] = label
    return found


def detect_layout(
    frame: pd.DataFrame, index: StimulusIndex | None = None, codes: dict[str, str] | None = None
) -> str:
    """Best guess of the layout of ``frame`` (shown to the user, who can change it)."""
    roles = find_role_columns(frame.columns)
    votes = vote_columns(frame.columns, codes)
    if len(set(votes.values())) >= 3 and _mostly_counts(frame[list(votes)]):
        return "votes"
    if "rater" in roles and "stimulus" in roles and set(roles) & set(DIMENSIONS):
        return "long"
    id_column = _wide_id_column(frame, roles)
    rest = [c for c in frame.columns if c != id_column and not is_non_rating_column(c)]
    in_header = sum(_looks_like_stimulus(split_cell_header(c)[0], index) for c in rest)
    in_values = _share_stimuli(frame[id_column], index) * len(rest)
    with_dimension = sum(split_cell_header(c)[1] is not None for c in rest)
    if in_values > in_header:
        return "wide_stimulus"
    if in_header or with_dimension:
        if in_header == 0 and roles.get("stimulus") == id_column:
            return "wide_stimulus"
        return "wide_rater"
    return "long"


def detect_mapping(
    frame: pd.DataFrame,
    index: StimulusIndex | None = None,
    codes: dict[str, str] | None = None,
    layout: str | None = None,
) -> ColumnMapping:
    """Detected layout and column roles; pass ``layout`` to detect the columns for that layout."""
    layout = layout or detect_layout(frame, index, codes)
    roles = find_role_columns(frame.columns)
    if layout == "long":
        return ColumnMapping("long", roles)
    id_role = ID_ROLE[layout]
    id_column = roles.get(id_role) if id_role in roles else _wide_id_column(frame, roles)
    mapping = ColumnMapping(layout, {id_role: id_column})
    if layout == "votes":
        used = vote_columns(frame.columns, codes, skip=[id_column])
        mapping.ignored = [c for c in frame.columns if c != id_column and c not in used]
        return mapping
    mapping.ignored = [
        c for c in frame.columns
        if c != id_column and is_non_rating_column(c)
    ]
    return mapping


def _wide_id_column(frame: pd.DataFrame, roles: dict[str, str]) -> str:
    for role in ("rater", "stimulus"):
        if role in roles:
            return roles[role]
    return str(frame.columns[0])


def _looks_like_stimulus(key: str, index: StimulusIndex | None) -> bool:
    if index is not None and index.normalise(key) in index.keys:
        return True
    return bool(IMAGE_SUFFIX.search(key))


def _share_stimuli(values: pd.Series, index: StimulusIndex | None) -> float:
    unique = [v for v in pd.unique(values) if v]
    if not unique:
        return 0.0
    return sum(_looks_like_stimulus(v, index) for v in unique) / len(unique)


def _mostly_counts(frame: pd.DataFrame) -> bool:
    """Most distinct values are whole numbers >= 0 (typos must not hide the layout)."""
    values = [parse_number(v) for v in pd.unique(frame.to_numpy().ravel()) if v != ""]
    counts = [n is not None and n >= 0 and n == int(n) for n in values]
    return bool(counts) and sum(counts) >= 0.5 * len(counts)


# ----------------------------------------------------------------------- mapping validation


def cell_columns(
    frame: pd.DataFrame, mapping: ColumnMapping, index: StimulusIndex | None = None
) -> dict[str, tuple[str, str | None]]:
    """Wide layouts: column -> (stimulus or rater key, dimension or None if undeclared)."""
    id_column = mapping.columns.get(ID_ROLE[mapping.layout])
    cells = {}
    for column in frame.columns:
        if column == id_column or column in mapping.ignored:
            continue
        key, dim = split_cell_header(column)
        whole = unicodedata.normalize("NFC", str(column)).strip()
        if mapping.layout == "wide_rater" and index is not None and dim is not None:
            if index.normalise(whole) in index.keys and index.normalise(key) not in index.keys:
                key, dim = whole, None
        cells[column] = (key, dim or mapping.dimension)
    return cells


def dimensions_present(
    frame: pd.DataFrame, mapping: ColumnMapping, index: StimulusIndex | None = None
) -> list[str]:
    """The rating dimensions the mapped file provides, in canonical order."""
    if mapping.layout == "long":
        found = {role for role in DIMENSIONS if mapping.columns.get(role)}
    elif mapping.layout == "votes":
        found = {"emotion"}
    else:
        found = {dim for _, dim in cell_columns(frame, mapping, index).values() if dim}
    return [dim for dim in DIMENSIONS if dim in found]


def mapping_problems(
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    scales: dict[str, Scale] | None = None,
    codes: dict[str, str] | None = None,
    index: StimulusIndex | None = None,
) -> list[str]:
    """Everything that stops the mapping from being applied, as messages for the user."""
    if mapping.layout not in LAYOUTS:
        return [f"unknown layout {mapping.layout!r}; choose one of {', '.join(LAYOUTS)}"]
    problems = [
        f"column {column!r} (mapped to {role}) is not in the file"
        for role, column in mapping.columns.items() if column and column not in frame.columns
    ]
    used = [c for c in mapping.columns.values() if c]
    if len(used) != len(set(used)):
        problems.append("one column is mapped to two roles; give each role its own column")
    required = ("rater", "stimulus") if mapping.layout == "long" else (ID_ROLE[mapping.layout],)
    problems += [
        f"choose the {role} column" for role in required if not mapping.columns.get(role)
    ]
    if problems:
        return problems
    dims = dimensions_present(frame, mapping, index)
    undeclared = []
    if mapping.layout in ("wide_rater", "wide_stimulus"):
        undeclared = [c for c, (_, dim) in cell_columns(frame, mapping, index).items() if not dim]
        if undeclared:
            shown = ", ".join(repr(c) for c in undeclared[:5])
            more = f" and {len(undeclared) - 5} more" if len(undeclared) > 5 else ""
            problems.append(
                f"columns {shown}{more} name no dimension (valence, arousal or emotion): "
                "choose the dimension this file holds, or ignore those columns"
            )
    if not dims and not undeclared:
        problems.append(_no_dimension_message(mapping.layout))
    problems += [
        f"declare the scale of {dim} (e.g. SAM 1-9, -100..100, 0..1 or MIN..MAX)"
        for dim in dims if dim in NUMERIC_DIMENSIONS and not (scales or {}).get(dim)
    ]
    return problems


def _no_dimension_message(layout: str) -> str:
    if layout == "votes":
        return "no column is named after an emotion; name the count columns or declare codes"
    if layout == "long":
        return "map at least one of the emotion, valence or arousal columns"
    return "no column holds a rating; choose the dimension the columns hold"


# --------------------------------------------------------------------- conversion to records


def _file_rows(frame: pd.DataFrame) -> np.ndarray:
    # read_table keeps the index of the parsed rows: index + 2 is the row the user sees.
    return np.asarray(frame.index, dtype=np.int64) + 2


def _long_records(frame: pd.DataFrame, mapping: ColumnMapping) -> pd.DataFrame:
    cols = mapping.columns
    records = pd.DataFrame({
        "row": _file_rows(frame),
        "rater": frame[cols["rater"]].to_numpy(),
        "stimulus_key": frame[cols["stimulus"]].to_numpy(),
    })
    for dim in DIMENSIONS:
        records[f"{dim}_raw"] = frame[cols[dim]].to_numpy() if cols.get(dim) else ""
        records[f"{dim}_column"] = cols.get(dim) or ""
    return records


def _melt(frame: pd.DataFrame, id_column: str, columns: list[str], id_name: str) -> pd.DataFrame:
    """One record (row, id_name, column, raw) per cell of ``columns``, row by row.

    Built from arrays rather than DataFrame.melt, so a file column called ``row``, ``column``
    or ``raw`` can never collide with these names.
    """
    values = frame[columns].to_numpy(dtype=object)
    width = len(columns)
    return pd.DataFrame({
        "row": np.repeat(_file_rows(frame), width),
        id_name: np.repeat(frame[id_column].to_numpy(dtype=object), width),
        "column": np.tile(np.asarray(columns, dtype=object), len(frame)),
        "raw": values.ravel(),
    })


def _wide_records(
    frame: pd.DataFrame, mapping: ColumnMapping, index: StimulusIndex | None
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    id_role = ID_ROLE[mapping.layout]
    other_role = "stimulus" if id_role == "rater" else "rater"
    cells = cell_columns(frame, mapping, index)
    melted = _melt(frame, mapping.columns[id_role], list(cells), id_role)
    melted = melted.loc[melted["raw"] != ""]
    melted[other_role] = melted["column"].map({c: key for c, (key, _) in cells.items()})
    melted["dim"] = melted["column"].map({c: dim for c, (_, dim) in cells.items()})
    keyed = melted[other_role]
    if other_role == "stimulus" and index is not None:
        keyed = keyed.map(index.normalise)
    clash = melted.assign(_key=keyed).duplicated(["row", "_key", "dim"], keep=False)
    errors = [_errors(
        melted.loc[clash], "duplicate", melted.loc[clash, "column"], melted.loc[clash, "raw"],
        "two columns give the same " + other_role + " and dimension in this row",
    )]
    melted = melted.loc[~clash]
    records = melted.set_index(["row", "rater", "stimulus", "dim"])[["raw", "column"]].unstack("dim")
    flat = pd.DataFrame(index=records.index)
    for dim in DIMENSIONS:
        has = ("raw", dim) in records.columns
        flat[f"{dim}_raw"] = records[("raw", dim)].fillna("") if has else ""
        flat[f"{dim}_column"] = records[("column", dim)].fillna("") if has else ""
    flat = flat.reset_index().rename(columns={"stimulus": "stimulus_key"})
    return flat, errors


def _vote_records(
    frame: pd.DataFrame, mapping: ColumnMapping, codes: dict[str, str] | None
) -> tuple[pd.DataFrame, list[pd.DataFrame], pd.DataFrame]:
    """Expanded vote raters, count errors, and one id record per file row (checked once)."""
    id_column = mapping.columns["stimulus"]
    columns = vote_columns(
        [c for c in frame.columns if c not in mapping.ignored], codes, skip=[id_column]
    )
    melted = _melt(frame, id_column, list(columns), "stimulus_key")
    counts = _parse_numbers(melted["raw"])
    bad_number = (melted["raw"] != "") & counts.isna()
    bad_count = counts.notna() & (
        (counts < 0) | (counts != counts.round()) | (counts > MAX_VOTES_PER_CELL)
    )
    errors = [
        _errors(melted.loc[bad_number], "non_numeric", melted.loc[bad_number, "column"],
                melted.loc[bad_number, "raw"], "the vote count is not a number"),
        _errors(melted.loc[bad_count], "out_of_scale", melted.loc[bad_count, "column"],
                melted.loc[bad_count, "raw"],
                f"a vote count must be a whole number from 0 to {MAX_VOTES_PER_CELL:,}"),
    ]
    counts = counts.where(~bad_count & counts.notna(), 0).astype(np.int64)
    if counts.sum() > MAX_VOTES_TOTAL:
        raise MappingError([
            f"the vote counts add up to {counts.sum():,} ratings, above the limit of "
            f"{MAX_VOTES_TOTAL:,}; check that the count columns hold counts, or split the file"
        ])
    totals = counts.groupby(melted["row"]).sum()
    empty = totals.index[totals == 0]
    stimuli = melted.drop_duplicates("row").set_index("row")["stimulus_key"]
    errors.append(_errors(
        pd.DataFrame({"row": empty}), "missing", id_column, stimuli.loc[empty].to_numpy(),
        "no votes in this row",
    ))
    expanded = melted.loc[melted.index.repeat(counts)].sort_values(["row"], kind="stable")
    k = expanded.groupby("row").cumcount() + 1
    records = pd.DataFrame({
        "row": expanded["row"].to_numpy(),
        "rater": [VOTE_RATER.format(batch=PENDING_BATCH, k=n) for n in k.to_numpy()],
        "stimulus_key": expanded["stimulus_key"].to_numpy(),
        "emotion_raw": expanded["column"].to_numpy(),
        "emotion_column": expanded["column"].to_numpy(),
    })
    for dim in NUMERIC_DIMENSIONS:
        records[f"{dim}_raw"] = ""
        records[f"{dim}_column"] = ""
    id_rows = pd.DataFrame({
        "row": _file_rows(frame), "rater": "votes", "stimulus_key": frame[id_column].to_numpy(),
        **{f"{dim}_raw": "votes" for dim in DIMENSIONS},
        **{f"{dim}_column": "" for dim in DIMENSIONS},
    })
    return records, errors, id_rows


def assign_vote_raters(ratings: pd.DataFrame, batch_id: int) -> pd.DataFrame:
    """Give anonymous vote raters their batch: ``votes#new:3`` -> ``votes#<batch_id>:3``."""
    pending = VOTE_RATER.format(batch=PENDING_BATCH, k="")
    final = VOTE_RATER.format(batch=batch_id, k="")
    return ratings.assign(rater=ratings["rater"].str.replace(pending, final, regex=False))


# ---------------------------------------------------------------------------------- validation


def prepare_ratings(
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    *,
    index: StimulusIndex,
    scales: dict[str, Scale] | None = None,
    codes: dict[str, str] | None = None,
    repeats: str = DEFAULT_POLICY,
) -> PreparedRatings:
    """Validate ``frame`` under ``mapping`` and convert it to long canonical rows.

    Raises :class:`MappingError` when the mapping itself cannot be applied; row problems are
    returned in ``errors`` (see :data:`ERROR_KINDS`), never raised. A rater rating a stimulus
    twice is a repeat (``occurrence`` 2), resolved in analyses by the ``repeats`` policy
    (:mod:`core.ratings.repeats`, stored in the mapping); with ``refuse`` it is a row error.
    """
    check_policy(repeats)
    scales = {dim: scale for dim, scale in (scales or {}).items() if scale is not None}
    codes = dict(codes or {})
    problems = mapping_problems(frame, mapping, scales, codes, index)
    if problems:
        raise MappingError(problems)
    errors: list[pd.DataFrame] = []
    id_rows = None
    if mapping.layout == "long":
        records = _long_records(frame, mapping)
    elif mapping.layout == "votes":
        records, errors, id_rows = _vote_records(frame, mapping, codes)
    else:
        records, errors = _wide_records(frame, mapping, index)
    ratings, row_errors = _validate(records, mapping, index, scales, codes, id_rows, repeats)
    report = _combine(errors + row_errors)
    valid = ratings.loc[~ratings["row"].isin(report["row"])].reset_index(drop=True)
    valid["occurrence"] = number_occurrences(valid).to_numpy()
    return PreparedRatings(
        ratings=valid, errors=report, layout=mapping.layout, n_file_rows=len(frame),
        mapping={**_provenance(frame, mapping, index, codes), POLICY_KEY: repeats},
        scales={dim: scale.to_dict() for dim, scale in scales.items()},
        label_map=codes,
    )


def _validate(
    records: pd.DataFrame,
    mapping: ColumnMapping,
    index: StimulusIndex,
    scales: dict[str, Scale],
    codes: dict[str, str],
    id_rows: pd.DataFrame | None = None,
    repeats: str = DEFAULT_POLICY,
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Check every record; rater and stimulus checks run on ``id_rows`` when given (votes)."""
    ids = records if id_rows is None else id_rows
    errors = _missing_errors(ids, mapping)
    id_stimuli = index.resolve(ids["stimulus_key"])
    unknown = id_stimuli.isna() & (ids["stimulus_key"] != "")
    errors.append(_errors(
        ids.loc[unknown], "unknown_stimulus", _role_column(ids, mapping, "stimulus", unknown),
        ids.loc[unknown, "stimulus_key"],
        "this stimulus is not in the study (" + index.describe() + ")",
    ))
    if mapping.layout == "votes" or repeats == "refuse":
        errors.append(_duplicate_errors(ids, id_stimuli, index, mapping))
    stimulus_ids = id_stimuli if id_rows is None else index.resolve(records["stimulus_key"])
    emotion, label_errors = _map_emotions(records, codes)
    errors.append(label_errors)
    ratings = pd.DataFrame({
        "row": records["row"].to_numpy(),
        "stimulus_id": stimulus_ids.array,
        "stimulus_key": records["stimulus_key"].to_numpy(),
        "rater": records["rater"].to_numpy(),
        "emotion": emotion.to_numpy(),
        "emotion_raw": records["emotion_raw"].where(records["emotion_raw"] != "", None).to_numpy(),
    })
    for dim in NUMERIC_DIMENSIONS:
        raw, normalised, dim_errors = _map_numbers(records, dim, scales.get(dim))
        ratings[dim], ratings[f"{dim}_raw"] = normalised.to_numpy(), raw.to_numpy()
        errors.append(dim_errors)
    return ratings[RATING_COLUMNS], errors


def _missing_errors(records: pd.DataFrame, mapping: ColumnMapping) -> list[pd.DataFrame]:
    errors = []
    for role in ("rater", "stimulus"):
        key = "stimulus_key" if role == "stimulus" else role
        empty = records[key] == ""
        column = _role_column(records, mapping, role, empty)
        errors.append(_errors(records.loc[empty], "missing", column, "", f"no {role} given"))
    long = records["rater"].str.len() > MAX_RATER_LENGTH
    errors.append(_errors(
        records.loc[long], "too_long", _role_column(records, mapping, "rater", long),
        records.loc[long, "rater"].str[:40] + "...",
        f"the rater id is longer than {MAX_RATER_LENGTH} characters; is the right column mapped?",
    ))
    blank = np.logical_and.reduce([records[f"{dim}_raw"] == "" for dim in DIMENSIONS])
    errors.append(_errors(
        records.loc[blank], "missing", "", "", "no emotion, valence or arousal value",
    ))
    return errors


def _role_column(
    records: pd.DataFrame, mapping: ColumnMapping, role: str, mask: pd.Series
) -> str | pd.Series:
    """The column a rater or stimulus came from: the mapped one, or in wide files the header."""
    if mapping.columns.get(role):
        return mapping.columns[role]
    headers = records.loc[mask, [f"{dim}_column" for dim in DIMENSIONS]]
    return headers.max(axis=1) if not headers.empty else ""


def _map_emotions(
    records: pd.DataFrame, codes: dict[str, str]
) -> tuple[pd.Series, pd.DataFrame]:
    raw = records["emotion_raw"]
    lookup = {value: to_canonical(value, codes) for value in pd.unique(raw) if value != ""}
    emotion = raw.map(lookup)
    unknown = emotion.isna() & (raw != "")
    error = _errors(
        records.loc[unknown], "unknown_label", records.loc[unknown, "emotion_column"],
        raw.loc[unknown],
        "not one of the eight emotions or their synonyms; add it to the code map "
        "(e.g. 1=anger)",
    )
    return emotion.astype(object).where(emotion.notna(), None), error


def _map_numbers(
    records: pd.DataFrame, dim: str, scale: Scale | None
) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    text = records[f"{dim}_raw"]
    raw = _parse_numbers(text)
    bad = raw.isna() & (text != "")
    errors = [_errors(
        records.loc[bad], "non_numeric", records.loc[bad, f"{dim}_column"], text.loc[bad],
        f"{dim} is not a number",
    )]
    if scale is None:
        return raw, raw, _combine(errors)
    outside = raw.notna() & out_of_scale(raw, scale)
    errors.append(_errors(
        records.loc[outside], "out_of_scale", records.loc[outside, f"{dim}_column"],
        text.loc[outside], f"{dim} is outside the declared scale {scale.label}",
    ))
    return raw, normalise(raw, scale), _combine(errors)


def _parse_numbers(text: pd.Series) -> pd.Series:
    """parse_number over a column, computed once per distinct value (ratings repeat a lot)."""
    lookup = {value: parse_number(value) for value in pd.unique(text)}
    return text.map(lookup).astype(float)


def _duplicate_errors(
    records: pd.DataFrame, stimulus_ids: pd.Series, index: StimulusIndex, mapping: ColumnMapping
) -> pd.DataFrame:
    key = stimulus_ids.astype(str)
    missing = stimulus_ids.isna()
    # Unknown stimuli still count as duplicates when their normalised names are equal.
    key.loc[missing] = "?" + records.loc[missing, "stimulus_key"].map(index.normalise)
    pairs = pd.DataFrame({"stimulus": key.to_numpy(), "rater": records["rater"].to_numpy()})
    pairs = pairs.loc[records["rater"].to_numpy() != ""]
    dup = pairs.duplicated(["stimulus", "rater"], keep=False)
    if not dup.any():
        return _combine([])
    dups = records.loc[dup[dup].index]
    rows = dups.groupby([key.loc[dups.index], dups["rater"]])["row"].transform(
        lambda r: ", ".join(str(v) for v in sorted(r))
    )
    if mapping.layout == "votes":
        messages = "stimulus " + dups["stimulus_key"] + " has more than one row (rows " + rows + ")"
        return _errors(dups, "duplicate", mapping.columns["stimulus"], dups["stimulus_key"], messages)
    messages = (
        "rater " + dups["rater"] + " rated stimulus " + dups["stimulus_key"]
        + " more than once (rows " + rows + ")"
    )
    return _errors(dups, "duplicate", mapping.columns.get("rater", ""), dups["rater"], messages)


def _errors(
    rows: pd.DataFrame, kind: str, column: Any, value: Any, message: Any
) -> pd.DataFrame:
    """Error lines for the rows of ``rows`` (each argument a scalar or aligned values)."""
    if rows.empty:
        return pd.DataFrame(columns=ERROR_COLUMNS)
    def values(item: Any) -> Any:
        return item.to_numpy() if isinstance(item, pd.Series) else item
    return pd.DataFrame({
        "row": rows["row"].to_numpy(), "column": values(column), "kind": kind,
        "value": values(value), "message": values(message),
    })


def _combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [part for part in parts if not part.empty]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=int if c == "row" else object) for c in ERROR_COLUMNS})
    report = pd.concat(parts, ignore_index=True)
    report["row"] = report["row"].astype(int)
    return report.sort_values(["row", "kind"], kind="stable").reset_index(drop=True)


def _provenance(
    frame: pd.DataFrame, mapping: ColumnMapping, index: StimulusIndex, codes: dict[str, str]
) -> dict[str, Any]:
    record = mapping.to_dict()
    if mapping.layout == "votes":
        record["cells"] = vote_columns(
            [c for c in frame.columns if c not in mapping.ignored], codes,
            skip=[mapping.columns["stimulus"]],
        )
    elif mapping.layout != "long":
        record["cells"] = {c: list(kd) for c, kd in cell_columns(frame, mapping, index).items()}
    return record


# ------------------------------------------------------------------------- helpers for the UI


def parse_label_codes(items: str | Iterable[str]) -> dict[str, str]:
    """``"1=anger, 2=happy"`` or ``["1=anger", "2=happy"]`` -> ``{"1": "anger", "2": "happiness"}``.

    Every label must be canonical or a known synonym; raises ValueError naming the bad item.
    """
    if isinstance(items, str):
        items = re.split(r"[,;\n]", items)
    codes = {}
    for item in items:
        if not item.strip():
            continue
        code, sep, label = item.partition("=")
        canonical = to_canonical(label) if sep else None
        if not code.strip() or canonical is None:
            raise ValueError(
                f"bad label code {item.strip()!r}: write CODE=LABEL with LABEL one of "
                f"{', '.join(CANONICAL)} (or a synonym), e.g. 1=anger"
            )
        codes[code.strip()] = canonical
    return codes


def label_summary(
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    codes: dict[str, str] | None = None,
    index: StimulusIndex | None = None,
) -> pd.DataFrame:
    """Distinct raw emotion labels with their count and canonical mapping (None = unknown)."""
    if mapping.layout == "votes":
        columns = [c for c in frame.columns if c != mapping.columns.get("stimulus")]
        raw = pd.Series([c for c in columns if c not in mapping.ignored], dtype=object)
    elif mapping.layout == "long":
        column = mapping.columns.get("emotion")
        raw = frame[column] if column else pd.Series([], dtype=object)
    else:
        cells = cell_columns(frame, mapping, index)
        chosen = [c for c, (_, dim) in cells.items() if dim == "emotion"]
        raw = pd.Series(frame[chosen].to_numpy().ravel(), dtype=object)
    counts = raw.loc[raw != ""].value_counts()
    return pd.DataFrame({
        "raw": counts.index.astype(str), "count": counts.to_numpy(),
        "canonical": [to_canonical(v, codes) for v in counts.index],
    })


def numeric_values(
    frame: pd.DataFrame, mapping: ColumnMapping, index: StimulusIndex | None = None
) -> dict[str, np.ndarray]:
    """The numbers of each numeric dimension in the file (empty when it has none)."""
    dims = dimensions_present(frame, mapping, index)
    found: dict[str, np.ndarray] = {}
    for dim in NUMERIC_DIMENSIONS:
        if dim not in dims:
            continue
        if mapping.layout == "long":
            values = _parse_numbers(frame[mapping.columns[dim]])
        else:
            cells = [c for c, (_, d) in cell_columns(frame, mapping, index).items() if d == dim]
            values = _parse_numbers(pd.Series(frame[cells].to_numpy().ravel(), dtype=object))
        found[dim] = values.dropna().to_numpy(dtype=float)
    return found


def numeric_summary(
    frame: pd.DataFrame, mapping: ColumnMapping, index: StimulusIndex | None = None
) -> dict[str, tuple[float, float] | None]:
    """Observed (min, max) of each numeric dimension in the file, None when it has no numbers."""
    return {
        dim: (float(values.min()), float(values.max())) if len(values) else None
        for dim, values in numeric_values(frame, mapping, index).items()
    }


def rejected_rows_table(frame: pd.DataFrame, errors: pd.DataFrame) -> pd.DataFrame:
    """The original file rows that were rejected, with their row number and every reason."""
    reasons = (
        errors.assign(text=errors["kind"].map(ERROR_KINDS) + ": " + errors["message"].astype(str))
        .groupby("row")["text"].agg("; ".join)
    )
    rows = frame.loc[frame.index.isin(np.asarray(reasons.index) - 2)]
    return rows.assign(file_row=_file_rows(rows), problems=reasons.loc[_file_rows(rows)].to_numpy())


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV with a UTF-8 BOM; text a spreadsheet would run is quoted (core.io.spreadsheet)."""
    return csv_bytes(frame)
