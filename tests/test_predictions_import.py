"""Importing precomputed predictions of other tools (FaceReader, py-feat, ...) as a model."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from sqlalchemy import select

from core.access import Role
from core.ratings.scales import Scale
from core.workflows import predictions_import as pi
from db.analysis import load_predictions
from db.models import Prediction, RegisteredModel, Stimulus, Study

pytestmark = pytest.mark.backends

NAMES = [f"face{index:02d}.jpg" for index in range(1, 6)]

# FaceReader-style export: intensities 0..1 per emotion, valence -1..1, arousal 0..1.
FACEREADER = """Filename,Neutral,Happy,Sad,Angry,Surprised,Scared,Disgusted,Contempt,Valence,Arousal
face01.jpg,0.10,0.80,0.00,0.00,0.10,0.00,0.00,0.00,0.75,0.40
face02.jpg,0.50,0.00,0.50,0.00,0.00,0.00,0.00,0.00,-0.30,0.10
FACE03.JPG,0.20,0.20,0.20,0.20,0.20,0.20,0.20,0.60,0.00,0.50
"""

# py-feat style: probabilities of seven emotions, no contempt, no valence/arousal.
PYFEAT = """input,anger,disgust,fear,happiness,sadness,surprise,neutral
face01.jpg,0.01,0.01,0.01,0.90,0.02,0.03,0.02
face02.jpg,0.70,0.10,0.05,0.05,0.05,0.03,0.02
"""


@pytest.fixture
def study(sessions) -> int:
    with sessions.begin() as session:
        row = Study(name="import-study")
        session.add(row)
        session.flush()
        for index, name in enumerate(NAMES):
            session.add(Stimulus(study_id=row.id, path=f"set/{name}", sha256=f"{index:064x}",
                                 media_type="image/jpeg", width=10, height=10, thumbnail=b""))
        return row.id


def facereader_mapping(sessions, study_id, data=FACEREADER):
    with sessions() as session:
        index, _ = pi.study_index(session, study_id)
    mapping = pi.detect_mapping(pd.read_csv(io.StringIO(data), dtype=str, keep_default_na=False), index)
    mapping.arousal_range = Scale(0.0, 1.0)
    return mapping


def test_facereader_export_is_detected_normalised_and_analysable(data_dir, sessions, study):
    mapping = facereader_mapping(sessions, study)
    assert mapping.stimulus == "Filename" and mapping.label is None
    assert (mapping.valence, mapping.arousal) == ("Valence", "Arousal")
    assert mapping.scores == {
        "neutral": "Neutral", "happiness": "Happy", "sadness": "Sad", "anger": "Angry",
        "surprise": "Surprised", "fear": "Scared", "disgust": "Disgusted", "contempt": "Contempt",
    }
    result = pi.import_predictions(sessions, study, "facereader-9", "fr.csv", FACEREADER.encode(),
                                   mapping=mapping, name="FaceReader 9", tool="FaceReader 9.0.8", actor=Role.OPERATOR)
    assert (result.stored, result.failed, result.not_stored_rows) == (3, 0, [])

    with sessions() as session:
        frame = load_predictions(session, study, ["facereader-9"]).set_index("stimulus")
        model = session.get(RegisteredModel, "facereader-9")
        rows = list(session.scalars(select(Prediction)))
    first = frame.loc["set/face01.jpg"]
    assert first["label"] == "happiness"
    assert first["p_happiness"] == pytest.approx(0.8)  # the row's intensities sum to 1
    assert first["valence"] == pytest.approx(0.75)
    assert first["arousal"] == pytest.approx(2 * 0.40 - 1)  # 0..1 mapped onto -1..1
    third = frame.loc["set/face03.jpg"]  # case-insensitive key; intensities summing to 2 renormalised
    assert third["label"] == "contempt" and third["p_contempt"] == pytest.approx(0.6 / 2.0)
    assert {row.checkpoint_sha256 for row in rows} == {result.sha256}
    assert {(row.preprocessing, row.detector) for row in rows} == {("imported", "imported")}
    assert rows[0].extras["raw_scores"]["happiness"] == 0.8 and rows[0].extras["file_row"] == 2
    assert model.source == "imported" and model.checkpoint_sha256 == result.sha256
    assert model.card["name"] == "FaceReader 9" and model.card["source_file"] == "fr.csv"
    assert model.card["labels"] == ["neutral", "happiness", "sadness", "surprise", "fear",
                                    "disgust", "anger", "contempt"]
    assert model.card["va"] is True


def test_pyfeat_export_gives_seven_probabilities_and_no_contempt(data_dir, sessions, study):
    result = pi.import_predictions(sessions, study, "pyfeat", "feat.csv", PYFEAT.encode(), actor=Role.OPERATOR)
    assert result.stored == 2
    with sessions() as session:
        frame = load_predictions(session, study, ["pyfeat"]).set_index("stimulus")
        card = session.get(RegisteredModel, "pyfeat").card
    assert frame.loc["set/face02.jpg", "label"] == "anger"
    assert math.isnan(frame.loc["set/face02.jpg", "p_contempt"])
    assert math.isnan(frame.loc["set/face02.jpg", "valence"])
    assert "contempt" not in card["labels"] and card["va"] is False


def test_label_column_with_codes_and_xlsx_file(data_dir, sessions, study):
    buffer = io.BytesIO()
    pd.DataFrame({"Image": ["face01", "face02.jpg"], "Predicted": ["1", "2"], "V": ["4", "8"]}).to_excel(
        buffer, index=False)
    with sessions() as session:
        frame_mapping = pi.preview(session, study, "tool.xlsx", buffer.getvalue()).mapping
    assert frame_mapping.stimulus == "Image" and frame_mapping.label == "Predicted"
    frame_mapping = pi.apply_overrides(frame_mapping, ["valence=V"])
    frame_mapping.label_codes = {"1": "happy", "2": "angry"}
    frame_mapping.valence_range = Scale(1, 9)
    with sessions() as session:
        preview = pi.preview(session, study, "tool.xlsx", buffer.getvalue(), frame_mapping)
    # "face01" is not a file name of this study (key mode: file name), so it is reported.
    assert preview.issues[["row", "kind"]].values.tolist() == [[2, "unknown_stimulus"]]
    assert [(r.label, r.valence) for r in preview.rows] == [("happiness", -0.25), ("anger", 0.75)]


ERRORS = """stimulus,label,valence,arousal
face01.jpg,happy,0.5,0.2
nosuch.jpg,sad,0.1,0.1
face02.jpg,bored,0.1,0.1
face03.jpg,neutral,1.7,0.1
face04.jpg,fear,FIT_FAILED,0.3
face01.jpg,happy,0.5,0.2
face05.jpg,,,
"""


def test_each_problem_is_reported_with_its_row_and_nothing_is_stored(data_dir, sessions, study):
    with pytest.raises(pi.ImportRejected) as caught:
        pi.import_predictions(sessions, study, "tool", "errors.csv", ERRORS.encode(), actor=Role.OPERATOR)
    issues = caught.value.preview.issues
    assert issues[["row", "kind"]].values.tolist() == [
        [3, "unknown_stimulus"], [4, "unknown_label"], [5, "out_of_range"],
        [6, "not_a_number"], [7, "duplicate"], [8, "empty"],
    ]
    assert "row 2" in issues.set_index("row").loc[7, "message"]
    assert "'bored'" in issues.set_index("row").loc[4, "message"]
    assert "errors.csv" in str(caught.value)
    with sessions() as session:
        assert session.scalars(select(Prediction)).all() == []
        assert session.get(RegisteredModel, "tool") is None


def test_stored_failures_keep_their_reason_and_unknown_rows_are_listed(data_dir, sessions, study):
    result = pi.import_predictions(sessions, study, "tool", "errors.csv", ERRORS.encode(),
                                   store_failures=True, actor=Role.OPERATOR)
    assert result.stored == 1 and result.failed == 4 and result.not_stored_rows == [3, 7]
    with sessions() as session:
        failures = {row.stimulus_sha256: row.error for row in session.scalars(
            select(Prediction).where(Prediction.status == "error"))}
    assert "FIT_FAILED" in failures[f"{3:064x}"]
    assert "outside the declared range -1..1" in failures[f"{2:064x}"]


def test_scores_out_of_range_and_incomplete_are_rejected(data_dir, sessions, study):
    data = "file,happy,sad\nface01.jpg,1.5,0.2\nface02.jpg,,0.3\nface03.jpg,0,0\n"
    mapping = pi.PredictionMapping("file", scores={"happiness": "happy", "sadness": "sad"})
    with sessions() as session:
        detected = pi.preview(session, study, "s.csv", data.encode()).mapping
        preview = pi.preview(session, study, "s.csv", data.encode(), mapping)
    assert detected.score_range.high == 100  # a value above 1 suggests percentages
    assert preview.issues[["row", "kind"]].values.tolist() == [
        [2, "out_of_range"], [3, "incomplete_scores"], [4, "zero_scores"],
    ]


def test_percent_scores_are_detected_and_scaled(data_dir, sessions, study):
    data = "file,Joy (Evidence),Anger (Evidence)\nface01.jpg,90,10\n"
    with sessions() as session:
        preview = pi.preview(session, study, "affdex.csv", data.encode())
    assert preview.mapping.score_range.high == 100
    assert preview.rows[0].probs == pytest.approx({"happiness": 0.9, "anger": 0.1})


def test_arousal_range_hint_when_all_values_are_non_negative(data_dir, sessions, study):
    with sessions() as session:
        preview = pi.preview(session, study, "fr.csv", FACEREADER.encode())
    assert any(hint.startswith("arousal") for hint in preview.hints)
    assert not any(hint.startswith("valence") for hint in preview.hints)


def test_model_id_rules_and_replacing_an_import(data_dir, sessions, study):
    with pytest.raises(ValueError, match="model id"):
        pi.import_predictions(sessions, study, "bad id!", "feat.csv", PYFEAT.encode(), actor=Role.OPERATOR)
    pi.import_predictions(sessions, study, "pyfeat", "feat.csv", PYFEAT.encode(), actor=Role.OPERATOR)
    pi.import_predictions(sessions, study, "pyfeat", "feat.csv", PYFEAT.encode(), actor=Role.OPERATOR)  # same file: idempotent
    changed = PYFEAT.replace("0.70,0.10", "0.10,0.70")
    with pytest.raises(ValueError, match="already holds predictions"):
        pi.import_predictions(sessions, study, "pyfeat", "feat2.csv", changed.encode(), actor=Role.OPERATOR)
    pi.import_predictions(sessions, study, "pyfeat", "feat2.csv", changed.encode(), replace=True, actor=Role.OPERATOR)
    with sessions() as session:
        rows = session.scalars(select(Prediction)).all()
        card = session.get(RegisteredModel, "pyfeat").card
        frame = load_predictions(session, study, ["pyfeat"]).set_index("stimulus")
    assert len(rows) == 2 and frame.loc["set/face02.jpg", "label"] == "disgust"
    assert [entry["source_file"] for entry in card["history"]] == ["feat.csv"]


def test_overrides_and_their_errors():
    mapping = pi.PredictionMapping("file", scores={"happiness": "Happy"})
    pi.apply_overrides(mapping, ["anger=Angry", "happy=", "label=Top"])
    assert mapping.scores == {"anger": "Angry"} and mapping.label == "Top"
    with pytest.raises(ValueError, match="neither"):
        pi.apply_overrides(mapping, ["bored=X"])
    with pytest.raises(ValueError, match="ROLE=COLUMN"):
        pi.apply_overrides(mapping, ["valence"])


@pytest.mark.parametrize("header,label", [
    ("Happy", "happiness"), ("happiness", "happiness"), ("Joy (Evidence)", "happiness"),
    ("p_anger", "anger"), ("Scared", "fear"), ("Disgusted", "disgust"), ("Valence", None),
    ("Filename", None),
])
def test_score_headers_map_by_name(header, label):
    assert pi.score_label(header) == label


def test_cli_import_with_declared_range_and_override(db_url, sessions, study, tmp_path, capsys):
    from core.__main__ import main

    path = tmp_path / "fr.csv"
    path.write_text(FACEREADER.replace("Filename", "Clip"), encoding="utf-8")
    command = ["--db", db_url, "import-predictions", "--study", "import-study", "--model-id", "fr",
               str(path), "--map", "stimulus=Clip", "--arousal-range", "0..1", "--tool", "FaceReader 9"]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "stimulus=Clip" in out and "arousal=Arousal (0..1)" in out
    assert "fr: 3 predictions stored, 0 stored as failures" in out
    with sessions() as session:
        frame = load_predictions(session, study, ["fr"]).set_index("stimulus")
    assert frame.loc["set/face01.jpg", "arousal"] == pytest.approx(-0.2)

    path.write_text(ERRORS, encoding="utf-8")
    assert main([*command[:7], str(path)]) == 1
    captured = capsys.readouterr()
    assert "row 4: unknown label: label 'bored'" in captured.out
    assert "nothing was imported" in captured.err


def test_same_file_with_another_mapping_needs_replace(data_dir, sessions, study):
    """Re-importing the same bytes with other column roles or ranges must not silently rewrite
    the stored predictions (seen in the UI review: a changed range went through unasked)."""
    pi.import_predictions(sessions, study, "pyfeat", "feat.csv", PYFEAT.encode(), actor=Role.OPERATOR)
    with sessions() as session:
        mapping = pi.preview(session, study, "feat.csv", PYFEAT.encode()).mapping
    swapped = dict(mapping.scores, anger=mapping.scores["disgust"], disgust=mapping.scores["anger"])
    other = pi.PredictionMapping(**{**mapping.__dict__, "scores": swapped})
    with pytest.raises(ValueError, match="another column mapping"):
        pi.import_predictions(sessions, study, "pyfeat", "feat.csv", PYFEAT.encode(), mapping=other, actor=Role.OPERATOR)
    with sessions() as session:
        frame = load_predictions(session, study, ["pyfeat"]).set_index("stimulus")
    assert frame.loc["set/face02.jpg", "label"] == "anger"
    pi.import_predictions(sessions, study, "pyfeat", "feat.csv", PYFEAT.encode(), mapping=other,
                          replace=True, actor=Role.OPERATOR)
    with sessions() as session:
        frame = load_predictions(session, study, ["pyfeat"]).set_index("stimulus")
    assert frame.loc["set/face02.jpg", "label"] == "disgust"
