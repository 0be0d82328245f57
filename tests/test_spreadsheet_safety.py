"""Formula injection: user text that starts like a formula leaves every CSV/XLSX export as text.

The end-to-end tests seed a real SQLite study whose stimulus paths, rater ids, metadata values
and model ids start with each risky character, write the report and a rejected-rows file
through the real CLI paths, and re-open the files with the csv module and openpyxl.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.reporting import exports
from core.agreement.synthetic import synthetic_study
from core.cli import ratings as ratings_cli
from core.cli import report
from core.ratings.labels import CANONICAL
from core.io.spreadsheet import RISKY_STARTS, csv_bytes, safe_cell, safe_frame, xlsx_bytes
from core.ratings.layouts import to_csv_bytes as ratings_to_csv_bytes
from core.workflows.stimuli import MetadataImportReport, ReportEntry, RowIssue, StimulusImportReport
from db.models import Prediction, Rating, RatingBatch, Stimulus, StimulusAttribute, Study

STUDY = "injection study"
PAYLOADS = ['=HYPERLINK("http://evil.example","x")', "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\ry"]


def risky(index: int, text: str) -> str:
    """``text`` behind the index-th payload, so every risky start is used."""
    return f"{PAYLOADS[index % len(PAYLOADS)]} {text}"


@pytest.mark.parametrize("start", RISKY_STARTS)
def test_text_starting_with_a_risky_character_is_quoted(start: str) -> None:
    assert safe_cell(start + "cmd") == "'" + start + "cmd"


@pytest.mark.parametrize("value", ["anger", "r-1", "a=b", "", " =x", "'=already", "行복"])
def test_harmless_text_is_unchanged(value: str) -> None:
    assert safe_cell(value) == value


@pytest.mark.parametrize("value", ["-0.5", "+3", "-1e-3", "-.5", "-7."])
def test_text_that_is_exactly_a_number_stays_unchanged(value: str) -> None:
    assert safe_cell(value) == value


@pytest.mark.parametrize("value", ["-0.5+1", "-inf", "- 1", "-1,5", "\t-1"])
def test_text_that_only_starts_like_a_number_is_quoted(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", [-0.5, -3, np.float64(-1.5), None, np.nan, True])
def test_non_text_values_are_never_touched(value: object) -> None:
    assert safe_cell(value) is value


def test_safe_frame_quotes_headers_and_text_but_keeps_number_columns() -> None:
    frame = pd.DataFrame({
        "=header": ["=cmd", "ok"],
        "score": [-0.5, 2.0],
        "label": pd.Categorical(["@x", "y"]),
        "raw": pd.Series(["-0.5", "-x"], dtype="string"),
    })
    safe = safe_frame(frame)
    assert list(safe.columns) == ["'=header", "score", "label", "raw"]
    assert safe["'=header"].tolist() == ["'=cmd", "ok"]
    assert safe["label"].tolist() == ["'@x", "y"]
    assert safe["raw"].tolist() == ["-0.5", "'-x"]
    pd.testing.assert_series_equal(safe["score"], frame["score"])
    assert frame.columns[0] == "=header"  # the caller's frame is left as it was


def test_xlsx_writes_text_as_strings_and_numbers_as_numbers() -> None:
    frame = pd.DataFrame({"name": PAYLOADS, "value": np.arange(len(PAYLOADS)) - 2.5})
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"t": frame}))).active
    names = [row[0] for row in sheet.iter_rows(min_row=2)]
    expected = ["'" + p.replace("\r", "\n") for p in PAYLOADS]  # XML reads a bare CR as LF
    assert [cell.value for cell in names] == expected
    assert {cell.data_type for cell in names} == {"s"}
    assert [row[1].value for row in sheet.iter_rows(min_row=2)] == frame["value"].tolist()


def test_every_csv_writer_quotes_risky_text() -> None:
    frame = pd.DataFrame({"rater": ["=r1", "r2"]})
    expected = ["rater", "'=r1", "r2"]
    for data in (csv_bytes(frame), exports.to_csv_bytes(frame), ratings_to_csv_bytes(frame)):
        assert data.decode("utf-8-sig").splitlines() == expected
    stimulus_report = StimulusImportReport([ReportEntry("@a.png", "-a.png", "error", "=bad")])
    metadata_report = MetadataImportReport("m.csv", "id", None, {}, issues=[RowIssue(2, "+s1", "unknown")])
    assert stimulus_report.to_csv().decode("utf-8-sig").splitlines()[1] == "'@a.png,'-a.png,error,'=bad"
    assert metadata_report.to_csv().decode("utf-8-sig").splitlines()[1] == "2,'+s1,unknown"


def test_a_carriage_return_inside_text_cannot_start_a_new_csv_row() -> None:
    frame = pd.DataFrame({"rater": ["x\r=cmd", "\r=cmd"], "n": [1, 2]})
    rows = list(csv.reader(io.StringIO(csv_bytes(frame).decode("utf-8-sig"), newline="")))
    assert rows == [["rater", "n"], ["x\r=cmd", "1"], ["'\r=cmd", "2"]]


def _seed_risky_study(factory: sessionmaker[Session]) -> None:
    """A synthetic study (2 models) whose names, ids and metadata start with risky characters."""
    ratings, predictions, stimuli, _ = synthetic_study(24, 6, 2, seed=5)
    paths = {row.stimulus_id: risky(i, f"s{i}.png") for i, row in enumerate(stimuli.itertuples())}
    raters = {r: risky(i, r) for i, r in enumerate(sorted(ratings["rater"].unique()))}
    models = {m: risky(i, m) for i, m in enumerate(sorted(predictions["model_id"].unique()))}
    genders = {"male": "=1+1", "female": "@female"}
    with factory.begin() as session:
        study = Study(name=STUDY)
        session.add(study)
        session.flush()
        batch = RatingBatch(study_id=study.id, file_name="=b.csv", sha256="0" * 64, layout="long")
        session.add(batch)
        ids = {}
        for row in stimuli.itertuples():
            stimulus = Stimulus(study_id=study.id, path=paths[row.stimulus_id], sha256=row.sha256,
                                media_type="image/png", width=8, height=8, thumbnail=b"",
                                intended_emotion=row.intended_emotion, precropped=True)
            session.add(stimulus)
            session.flush()
            ids[row.stimulus_id] = stimulus.id
            session.add(StimulusAttribute(stimulus_id=stimulus.id, key="gender", value=genders[row.gender]))
        for row in ratings.itertuples():
            session.add(Rating(batch_id=batch.id, stimulus_id=ids[row.stimulus_id], rater=raters[row.rater],
                               emotion=row.emotion, valence=row.valence, arousal=row.arousal))
        sha = dict(zip(stimuli["stimulus_id"], stimuli["sha256"]))
        for row in predictions.itertuples():
            probs = {label: getattr(row, f"p_{label}") for label in CANONICAL
                     if np.isfinite(getattr(row, f"p_{label}"))}
            session.add(Prediction(stimulus_sha256=sha[row.stimulus_id], model_id=models[row.model_id],
                                   checkpoint_sha256="0" * 64, preprocessing="v1", detector="none",
                                   label=row.label, probs=probs, valence=row.valence, arousal=row.arousal))


def _run(module, db_url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db")
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--db", db_url, *argv])
    return args.handler(args)


def _csv_fields(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [field for row in csv.reader(handle) for field in row]


def _assert_no_live_formula_text(fields: list[str]) -> None:
    unsafe = [field for field in fields if safe_cell(field) != field]
    assert not unsafe, f"fields a spreadsheet would run: {unsafe[:5]}"


def test_report_csv_and_xlsx_hold_no_formulas(sessions, db_url: str, tmp_path: Path) -> None:
    _seed_risky_study(sessions)
    out = tmp_path / "report"
    assert _run(report, db_url, "report", "--study", STUDY, "--out", str(out), "--boot", "0",
                "--no-figures") == 0

    fields = [field for path in sorted((out / "tables").glob("*.csv")) for field in _csv_fields(path)]
    _assert_no_live_formula_text(fields)
    quoted = {field for field in fields if field.startswith("'")}
    for start in RISKY_STARTS:  # each payload came through, quoted
        assert any(field.startswith("'" + start) for field in quoted), repr(start)
    assert {"'=1+1", "'@female"} <= quoted  # metadata values (subgroups)
    assert any(field.endswith("model_0") for field in quoted)  # model ids
    assert any(field.endswith("r000") for field in quoted)  # rater ids

    book = openpyxl.load_workbook(out / "tables.xlsx")
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert [cell.coordinate for cell in cells if cell.data_type == "f"] == []
    texts = {cell.value for cell in cells if isinstance(cell.value, str)}
    assert {field.replace("\r", "\n") for field in quoted} <= texts  # XML reads a bare CR as LF
    _assert_no_live_formula_text(list(texts))


def test_rejected_rows_file_quotes_rejected_labels_and_raters(sessions, db_url: str, tmp_path: Path) -> None:
    _seed_risky_study(sessions)
    first_stimulus = risky(0, "s0.png")
    rating_file = tmp_path / "ratings.csv"
    pd.DataFrame({
        "rater": ["-r9", "@r8"],
        "stimulus": [first_stimulus, first_stimulus],
        "emotion": ["anger", '=cmd|" /C calc"!A0'],
    }).to_csv(rating_file, index=False)
    rejected = tmp_path / "rejected.csv"
    _run(ratings_cli, db_url, "import-ratings", "--study", STUDY, str(rating_file), "--partial",
         "--rejected", str(rejected))
    fields = _csv_fields(rejected)
    _assert_no_live_formula_text(fields)
    assert {"'@r8", "'=cmd|\" /C calc\"!A0"} <= set(fields)
