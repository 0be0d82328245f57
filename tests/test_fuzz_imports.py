"""Fuzzing every import path with bad input (issue 2, item 7).

The property everywhere: a bad upload ends in a structured report (rows or files named, with a
reason) or a typed error (TableError, MappingError, MetadataError, CardError, ImageError, ...)
whose message says what is wrong -- never an unexpected exception such as KeyError, IndexError,
UnicodeDecodeError or a pandas parser error -- and nothing already stored changes.
"""

from __future__ import annotations

import io
import math
import os
import unicodedata
import zipfile
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select

from core.access import Role
from core.io.images import ImageError, open_image
from core.io.storage import blob_path
from core.io.tabular import TableError, read_table
from core.models.card import CardError, card_spec, parse_card_text, validate_card
from core.ratings.labels import CANONICAL
from core.ratings.layouts import (
    LAYOUTS,
    MappingError,
    StimulusIndex,
    detect_mapping,
    label_summary,
    numeric_summary,
    prepare_ratings,
    rejected_rows_table,
)
from core.ratings.scales import PRESETS
from core.workflows import predictions_import as pi
from core.workflows.stimuli import MetadataError, import_files, import_metadata
from db import stimuli as stimulus_db
from db.models import Prediction, RegisteredModel, Stimulus, StimulusAttribute

# FUZZ_EXAMPLES=2000 for a longer hunt; the default 100 keeps this file near 15 s.
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 100)), deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STIMULI = ["img01.png", "img02.png", "행복.png"]
SAM = {"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]}
NASTY_CELLS = [
    "", " ", "5", "4,5", "1.234,5", "-3", "1e400", "nan", "NaN", "inf", "-", "N/A", "5/9", "9999",
    "happy", "Anger", "HAPPINESS", "😀", "행복", "1", "1.0", "img01.png", "IMG02.PNG", "행복.png",
    "set/img01.png", "nope.png", "\ufeff3", '"', '""', "a\nb", "\r", "\x00", "..", "/etc/passwd",
]
NASTY_HEADERS = [
    "rater", "participant", "stimulus", "image", "emotion", "label", "valence", "arousal",
    "img01.png_valence", "img02.png:arousal", "valence_img01.png", "행복.png", "P01", "P02_valence",
    "neutral", "happiness", "anger", "sadness", "Happy", "notes", "", " rater ", "\ufeffimage",
    "Rater", "file", "score", "Valence", "Arousal", "row", "column", "raw", "dim",
]
cells = st.one_of(st.sampled_from(NASTY_CELLS), st.text(max_size=6))
headers = st.one_of(st.sampled_from(NASTY_HEADERS), st.text(max_size=6))
file_names = st.sampled_from(["r.csv", "r.tsv", "r.txt", "r.xlsx", "ratings", "평가.csv"])


@st.composite
def table_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A messy delimited file (or random bytes) in one of the encodings Excel users send."""
    name = draw(file_names)
    if draw(st.integers(0, 9)) == 0:
        return name, draw(st.binary(max_size=300))
    width = draw(st.integers(1, 5))
    header = draw(st.lists(headers, min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=width + 1), max_size=6))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(delimiter.join(row) for row in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp949", "cp1252"]))
    return name, text.encode(encoding, errors="replace")


def assert_names_file(error: Exception, name: str) -> None:
    assert not isinstance(error, UnicodeError)
    assert str(error).startswith(f"{name}:"), str(error)


# ------------------------------------------------------------------------------ table reader


@FUZZ
@given(upload=table_files())
def test_read_table_returns_clean_strings_or_a_table_error(upload) -> None:
    name, data = upload
    try:
        frame = read_table(name, data)
    except TableError as error:
        assert_names_file(error, name)
        return
    columns = list(frame.columns)
    assert len(columns) == len(set(columns)) and all(isinstance(c, str) and c for c in columns)
    assert all(c == c.strip() and not c.startswith("\ufeff") for c in columns)
    assert not frame.empty and frame.map(lambda cell: isinstance(cell, str)).all().all()
    rows = frame.index.to_numpy()
    assert rows.dtype.kind == "i" and (rows >= 0).all() and (np.diff(rows) > 0).all()
    assert not (frame == "").all(axis=1).any()


# ----------------------------------------------------------------------------------- ratings


@pytest.fixture(scope="module")
def index() -> StimulusIndex:
    return StimulusIndex.build({name: number for number, name in enumerate(STIMULI, start=1)})


@FUZZ
@given(upload=table_files(), layout=st.sampled_from([None, *LAYOUTS]),
       codes=st.sampled_from([None, {"1": "anger", "2": "happiness"}]))
def test_rating_files_end_in_a_report_or_a_mapping_error(index, upload, layout, codes) -> None:
    name, data = upload
    try:
        frame = read_table(name, data)
    except TableError:
        return
    mapping = detect_mapping(frame, index, codes, layout=layout)
    label_summary(frame, mapping, codes, index)
    try:
        numeric_summary(frame, mapping, index)
        prepared = prepare_ratings(frame, mapping, index=index, scales=SAM, codes=codes)
    except MappingError as error:
        assert error.problems and all(problem.strip() for problem in error.problems)
        return
    file_rows = set((frame.index + 2).tolist())
    assert set(prepared.errors["row"]) <= file_rows
    assert prepared.errors["message"].map(lambda text: bool(str(text).strip())).all()
    ratings = prepared.ratings
    assert set(ratings["row"]) <= file_rows and not set(ratings["row"]) & set(prepared.errors["row"])
    assert set(ratings["stimulus_id"].dropna().astype(int)) <= {1, 2, 3}
    assert ratings["emotion"].dropna().isin(CANONICAL).all()
    for dim in ("valence", "arousal"):
        values = ratings[dim].dropna().astype(float)
        assert ((values >= -1 - 1e-9) & (values <= 1 + 1e-9)).all()
    rejected = rejected_rows_table(frame, prepared.errors)
    assert set(rejected["file_row"]) == set(prepared.errors["row"])


# ---------------------------------------------------------------------- database-backed paths


@pytest.fixture
def study(sessions) -> int:
    with sessions.begin() as session:
        study_id = stimulus_db.create_study(session, "fuzz", actor=Role.OPERATOR).id
        for number, name in enumerate(STIMULI):
            session.add(Stimulus(
                study_id=study_id, path=f"set/{name}", sha256=f"{number:064x}",
                media_type="image/png", width=1, height=1, thumbnail=b"",
            ))
    return study_id


def snapshot(sessions) -> tuple:
    """Everything an import could damage, in a comparable form."""
    with sessions() as session:
        return (
            sorted(session.execute(select(Stimulus.path, Stimulus.sha256, Stimulus.intended_emotion)).all()),
            sorted(session.execute(select(StimulusAttribute.stimulus_id, StimulusAttribute.key, StimulusAttribute.value)).all()),
            session.scalar(select(func.count()).select_from(Prediction)),
            sorted(session.scalars(select(RegisteredModel.id)).all()),
        )


@FUZZ
@given(upload=table_files(), store_failures=st.booleans())
def test_prediction_files_end_in_a_report_or_a_clear_error(sessions, study, upload, store_failures) -> None:
    name, data = upload
    before = snapshot(sessions)
    try:
        result = pi.import_predictions(sessions, study, "fuzz-tool", name, data,
                                       store_failures=store_failures, replace=True, actor=Role.OPERATOR)
    except pi.ImportRejected as rejected:
        assert set(rejected.preview.bad_rows) and rejected.preview.issues["row"].min() >= 2
        assert snapshot(sessions) == before
        return
    except (TableError, ValueError) as error:
        assert_names_file(error, name)
        assert snapshot(sessions) == before
        return
    with sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Prediction).where(
            Prediction.model_id == "fuzz-tool", Prediction.checkpoint_sha256 == result.sha256))
    assert stored == result.stored + result.failed


@FUZZ
@given(upload=table_files())
def test_metadata_files_end_in_a_report_or_a_clear_error(sessions, study, upload) -> None:
    name, data = upload
    before = snapshot(sessions)
    try:
        with sessions.begin() as session:
            report = import_metadata(session, study, name, data, actor=Role.OPERATOR)
    except (TableError, MetadataError) as error:
        assert_names_file(error, name)
        assert snapshot(sessions) == before
        return
    assert report.matched <= report.n_rows
    assert all(issue.row >= 2 and issue.reason for issue in report.issues)
    with sessions() as session:
        keys = set(session.scalars(select(StimulusAttribute.key)))
    assert keys <= set(report.attribute_columns.values()) | {key for _, key, _ in before[1]}


# --------------------------------------------------------------------------------- model cards

json_values = st.one_of(
    st.lists(st.one_of(st.floats(), st.integers(-5, 5000)), min_size=2, max_size=3),
    st.recursive(
        st.none() | st.booleans() | st.integers(-10, 5000) | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8,
    ),
)
CARD_FIELDS = [
    "id", "name", "license", "labels", "params", "file", "file.format", "file.sha256",
    "file.input", "input", "input.size", "input.colour", "input.mean", "input.std", "input.scale",
    "input.crop", "input.margin", "input.resize", "input.resize_short_side", "outputs",
    "outputs.scores", "outputs.valence", "outputs.arousal", "outputs.va_decode",
    "outputs.va_range", "outputs.scores_type",
]


def base_card() -> dict:
    return {
        "id": "fuzz", "name": "Fuzz", "license": "MIT", "labels": ["neutral", "anger"],
        "file": {"format": "onnx"}, "input": {"size": [32, 32], "colour": "RGB"},
        "outputs": {"scores": "output[0:2]", "valence": "output[2]", "arousal": "output[3]"},
    }


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(CARD_FIELDS), json_values), max_size=4))
def test_card_fields_are_validated_or_refused_with_their_name(changes) -> None:
    data = base_card()
    for path, value in changes:
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    try:
        card = validate_card(data)
    except CardError as error:
        assert all(line.startswith("card field `") for line in str(error).splitlines())
        return
    prep = card.preprocessing
    numbers = [prep.scale, *prep.mean, *prep.std, *card.layout["va_range"]]
    assert all(math.isfinite(value) for value in numbers) and prep.scale > 0
    assert card_spec(card, "0" * 64).id == card.id


@FUZZ
@given(text=st.one_of(
    st.text(max_size=200),
    st.sampled_from(["{", "[[[[", "a = [[[[[[", "\ufeffid = 'x'", "{\"id\": NaN}", "id = nan"]),
))
def test_card_text_parses_or_names_the_problem(text) -> None:
    try:
        data = parse_card_text(text)
    except CardError as error:
        assert str(error).startswith("the card is not valid TOML/JSON")
        return
    try:
        validate_card(data)
    except CardError:
        pass


# ------------------------------------------------------------------------- images and archives


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


entry_names = st.one_of(
    st.sampled_from([
        "", "/", ".", "a/", "..", "../x.png", "/abs.png", "C:x.png", "c:\\win.png", "a\\..\\b.png",
        "a/../b.png", "./c.png", "a//b.png", ".hidden.png", "__MACOSX/._x.png", "Thumbs.db",
        "행복/얼굴.png", "😀.png", "x" * 1200 + ".png", "dir/ ", "nested.zip", "same.png",
    ]),
    st.text(max_size=12),
)
contents = st.one_of(
    st.integers(0, 3).map(png), st.binary(max_size=64), st.just(b""),
    st.just(b"PK\x03\x04broken"), st.just(b"GIF89a"),
)


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    entries = draw(st.lists(st.tuples(entry_names, contents), max_size=6))
    if draw(st.booleans()):
        entries.append(("inner.zip", zip_bytes([("deep.png", png(7))])))
    return zip_bytes(entries, draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])))


def check_import(sessions, study_id: int, uploads: list[tuple[str, bytes]]) -> None:
    before = snapshot(sessions)
    with sessions.begin() as session:
        report = import_files(session, study_id, uploads, actor=Role.OPERATOR)
    for name, _ in uploads:
        assert any(e.file == name or e.file.startswith(f"{name}: ") for e in report.entries), name
    assert all(entry.message for entry in report.entries)
    added = {entry.path: entry for entry in report.added}
    for path in added:
        parts = PurePosixPath(path).parts
        assert path and not path.startswith("/") and ".." not in parts and ":" not in parts[0][:2]
        assert unicodedata.is_normalized("NFC", path) and "\\" not in path
    after = snapshot(sessions)
    new_paths = {path for path, _, _ in after[0]} - {path for path, _, _ in before[0]}
    assert new_paths == set(added)
    assert set(before[0]) <= set(after[0])  # nothing stored is replaced
    with sessions() as session:
        shas = session.scalars(select(Stimulus.sha256).where(Stimulus.path.in_(new_paths)))
        assert all(blob_path(sha).exists() for sha in shas)


@FUZZ
@given(uploads=st.lists(st.tuples(entry_names, contents), min_size=1, max_size=4))
def test_random_files_are_reported_one_by_one(sessions, study, uploads) -> None:
    check_import(sessions, study, uploads)


@FUZZ
@given(archive=archives(), name=st.sampled_from(["faces.zip", "faces.ZIP", "얼굴.zip", "noext"]))
def test_random_archives_are_reported_entry_by_entry(sessions, study, archive, name) -> None:
    check_import(sessions, study, [(name, archive)])


@FUZZ
@given(data=st.data())
def test_corrupted_archives_never_abort_the_import(sessions, study, data) -> None:
    archive = bytearray(zip_bytes(
        [(f"f{seed}.png", png(seed)) for seed in range(3)], zipfile.ZIP_DEFLATED,
    ))
    for _ in range(data.draw(st.integers(1, 4))):
        archive[data.draw(st.integers(0, len(archive) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(archive) // 2, len(archive)))
    check_import(sessions, study, [("broken.zip", bytes(archive[:cut]))])


@FUZZ
@given(data=st.binary(max_size=400), prefix=st.sampled_from([
    b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WEBP", b"BM", b"II*\x00",
]))
def test_random_bytes_are_no_image_or_a_decoded_rgb_image(data, prefix) -> None:
    try:
        image, media_type = open_image(prefix + data)
    except ImageError as error:
        assert str(error)
        return
    assert image.mode == "RGB" and media_type.startswith("image/")
