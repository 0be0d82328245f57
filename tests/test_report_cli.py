"""``python -m core report``: a seeded study in a real SQLite file, every table written."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.agreement.report import TABLES, build_report
from core.agreement.synthetic import synthetic_study
from core.cli import report
from core.ratings.labels import CANONICAL
from db.analysis import load_predictions, load_ratings, load_stimuli
from db.models import Prediction, Rating, RatingBatch, Stimulus, StimulusAttribute, Study

STUDY = "cli study"


def seed_study(factory: sessionmaker[Session], n_stimuli: int = 40) -> dict[str, int]:
    """Write a synthetic study (2 batches, 2 models, one 7-class) through the ORM."""
    ratings, predictions, stimuli, _ = synthetic_study(n_stimuli, 6, 2, seed=5)
    with factory.begin() as session:
        study = Study(name=STUDY)
        session.add(study)
        session.flush()
        ids = {}
        for row in stimuli.itertuples():
            stimulus = Stimulus(study_id=study.id, path=row.stimulus, sha256=row.sha256,
                                media_type="image/png", width=8, height=8, thumbnail=b"",
                                intended_emotion=row.intended_emotion, precropped=True)
            session.add(stimulus)
            session.flush()
            ids[row.stimulus_id] = stimulus.id
            session.add(StimulusAttribute(stimulus_id=stimulus.id, key="gender", value=row.gender))
        batches = [RatingBatch(study_id=study.id, file_name=f"b{i}.csv", sha256=f"{i:064x}",
                               layout="long") for i in range(2)]
        session.add_all(batches)
        session.flush()
        for row in ratings.itertuples():
            batch = batches[int(row.rater[1:]) % 2]
            session.add(Rating(batch_id=batch.id, stimulus_id=ids[row.stimulus_id], rater=row.rater,
                               emotion=row.emotion, valence=row.valence, arousal=row.arousal))
        sha = dict(zip(stimuli["stimulus_id"], stimuli["sha256"]))
        for row in predictions.itertuples():
            probs = {label: getattr(row, f"p_{label}") for label in CANONICAL
                     if np.isfinite(getattr(row, f"p_{label}"))}
            session.add(Prediction(stimulus_sha256=sha[row.stimulus_id], model_id=row.model_id,
                                   checkpoint_sha256="0" * 64, preprocessing="v1", detector="none",
                                   label=row.label, probs=probs, valence=row.valence,
                                   arousal=row.arousal))
        return {"study": study.id, "batch0": batches[0].id, "batch1": batches[1].id}


def run_cli(db_url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db")
    report.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--db", db_url, "report", *argv])
    return args.handler(args)


@pytest.fixture
def seeded(sessions, db_url) -> tuple[str, dict[str, int], sessionmaker[Session]]:
    return db_url, seed_study(sessions), sessions


def test_report_writes_every_table_reproducibly(seeded, tmp_path: Path):
    db_url, ids, factory = seeded
    out = tmp_path / "out"
    assert run_cli(db_url, "--study", STUDY, "--out", str(out), "--boot", "40", "--seed", "3",
                   "--no-figures") == 0
    assert sorted(p.stem for p in (out / "tables").glob("*.csv")) == sorted(TABLES)
    assert (out / "tables.xlsx").stat().st_size > 0
    icc_tex = (out / "latex" / "icc.tex").read_text()
    assert "ICC(A,1) = ICC(2,1)" in icc_tex and r"\toprule" in icc_tex
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["seed"], manifest["boot"]) == (3, 40)
    assert manifest["batches"] == sorted([ids["batch0"], ids["batch1"]])

    written = pd.read_csv(out / "tables" / "model_continuous.csv", encoding="utf-8-sig")
    with factory() as session:
        direct = build_report(load_ratings(session, ids["study"]), load_predictions(session, ids["study"]),
                              load_stimuli(session, ids["study"]), None, n_boot=40, seed=3)
    expected = direct["model_continuous"]
    assert written["estimate"].to_numpy() == pytest.approx(expected["estimate"].to_numpy())
    assert written["ci_low"].to_numpy() == pytest.approx(expected["ci_low"].to_numpy())
    assert set(written["model_id"]) == {"model_0", "model_1"}
    groups = pd.read_csv(out / "tables" / "subgroups.csv", encoding="utf-8-sig")
    assert set(groups["group"]) == {"female", "male"}


def test_report_filters_models_and_batches(seeded, tmp_path: Path):
    db_url, ids, _ = seeded
    out = tmp_path / "filtered"
    assert run_cli(db_url, "--study", STUDY, "--out", str(out), "--boot", "0", "--no-figures",
                   "--models", "model_1", "--batches", str(ids["batch0"])) == 0
    labels = pd.read_csv(out / "tables" / "model_labels.csv", encoding="utf-8-sig")
    assert set(labels["model_id"]) == {"model_1"}
    assert labels["ci_low"].isna().all()  # --boot 0: no bootstrap CIs, said so
    assert (labels["ci_method"] == "none (n_boot=0)").all()
    loo = pd.read_csv(out / "tables" / "loo.csv", encoding="utf-8-sig")
    assert set(loo["rater"]) == {"r000", "r002", "r004"}  # raters of batch 0 only
    models = pd.read_csv(out / "tables" / "models.csv", encoding="utf-8-sig")
    assert models.loc[0, "cannot_output"] == "contempt"


def test_unknown_study_is_a_clear_error(seeded, tmp_path: Path, capsys):
    db_url, _, _ = seeded
    assert run_cli(db_url, "--study", "nope", "--out", str(tmp_path / "x")) == 2
    error = capsys.readouterr().err
    assert "no study named 'nope'" in error and STUDY in error


@pytest.mark.slow
def test_report_writes_figures(seeded, tmp_path: Path):
    db_url, _, _ = seeded
    out = tmp_path / "figs"
    assert run_cli(db_url, "--study", STUDY, "--out", str(out), "--boot", "20") == 0
    svgs = {p.stem for p in (out / "figures").glob("*.svg")}
    pngs = {p.stem for p in (out / "figures").glob("*.png")}
    assert svgs == pngs
    assert {"circumplex_humans", "circumplex_model_0", "confusion_model_0_human_majority",
            "model_vs_model_valence", "models_vs_humans_valence_ccc", "recall_human_majority",
            "replication_gender-female-male_valence_ccc"} <= svgs
    # One static circumplex per model: a static export cannot show the page's model dropdown.
    model_svg = (out / "figures" / "circumplex_model_1.svg").read_text()
    assert model_svg.lstrip().startswith("<svg") and "model_1" in model_svg


def latex_header(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[lines.index(r"\toprule") + 1]


def test_latex_tables_are_compact_unless_asked_for_every_column(seeded, tmp_path: Path):
    db_url, _, _ = seeded
    compact, full = tmp_path / "compact", tmp_path / "full"
    for out, extra in ((compact, ()), (full, ("--latex-full",))):
        assert run_cli(db_url, "--study", STUDY, "--out", str(out), "--boot", "0", "--no-figures", *extra) == 0
    header = latex_header(compact / "latex" / "model_continuous.tex")
    assert header.startswith("model") and r"estimate [95\% CI]" in header and header.endswith(r"n \\")
    assert "pipeline" not in header and header.count("&") <= 4
    assert "pipeline" in latex_header(full / "latex" / "model_continuous.tex")
