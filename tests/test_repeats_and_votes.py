"""Repeated ratings (policies, test_retest) and vote-count batches (counts ceiling, column order).

The test-retest study is generated: 20 raters x 30 faces, each face shown twice, valence =
face's true value + rater bias + occasion noise; imported through prepare_ratings and
import_batch into a real SQLite file and read back by db.analysis, as the app does.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pingouin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from core.access import Role
from core.agreement import StudyData
from core.agreement.bootstrap import Bootstrap
from core.agreement.consensus import majority_codes
from core.agreement.report import build_report
from core.agreement.retest import retest_reliability
from core.agreement.votes import NOT_APPLICABLE, counts_ceiling
from core.io.tabular import read_table
from core.ratings.layouts import StimulusIndex, assign_vote_raters, detect_mapping, prepare_ratings
from core.ratings.repeats import RepeatsRefused, repeat_pairs, resolve_repeats
from core.ratings.scales import PRESETS
from db.analysis import load_ratings
from db.models import Stimulus
from db.queries import get_or_create_study
from db.ratings import import_batch, stimulus_index

SAM = {"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]}
EMOTIONS = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]
N_RATERS, N_FACES = 20, 30


def retest_file(occasions: tuple[int, ...] = (1, 2), seed: int = 3) -> str:
    """Long CSV: every rater rates every face once per occasion (occasion blocks in order)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(2, 8, N_FACES)
    bias = rng.normal(0, 0.6, N_RATERS)
    rows = []
    for occasion in (1, 2):
        noise = rng.normal(0, 1.2, (N_RATERS, N_FACES))
        labels = rng.integers(0, 3, (N_RATERS, N_FACES))
        for r in range(N_RATERS):
            for f in range(N_FACES):
                value = float(np.clip(np.round(truth[f] + bias[r] + noise[r, f], 1), 1, 9))
                label = EMOTIONS[(f + labels[r, f]) % 3]
                if occasion in occasions:
                    rows.append(f"R{r:02d},face{f:02d}.png,{label},{value},5")
    return "rater,stimulus,emotion,valence,arousal\n" + "\n".join(rows) + "\n"


@pytest.fixture
def study(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        study_id = get_or_create_study(session, "retest", actor=Role.OPERATOR).id
        for f in range(N_FACES):
            session.add(Stimulus(study_id=study_id, path=f"face{f:02d}.png", sha256=f"{f:064x}",
                                 media_type="image/png", width=1, height=1, thumbnail=b""))
    return study_id


def import_text(sessions, study_id: int, text: str, repeats: str, name: str) -> int:
    data = text.encode()
    frame = read_table(name, data)
    with sessions.begin() as session:
        index = stimulus_index(session, study_id)
        prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index, scales=SAM,
                                   repeats=repeats)
        return import_batch(session, study_id, prepared, file_name=name, data=data,
                            actor=Role.OPERATOR).batch_id


def analysed(sessions, study_id: int) -> pd.DataFrame:
    with sessions() as session:
        return load_ratings(session, study_id)


def icc_a1(ratings: pd.DataFrame) -> float:
    tables = build_report(ratings, None, None, None, n_boot=0)
    icc = tables["icc"].set_index(["dimension", "form"])
    return float(icc.at[("valence", "ICC(A,1)"), "estimate"])


@pytest.mark.parametrize("policy", ["average", "first", "newest"])
def test_every_repeat_is_stored_and_resolved_by_the_batch_policy(sessions, study, policy):
    import_text(sessions, study, retest_file(), policy, "retest.csv")
    ratings = analysed(sessions, study)
    assert len(ratings) == 2 * N_RATERS * N_FACES
    assert set(ratings["occurrence"]) == {1, 2} and set(ratings["repeat_policy"]) == {policy}
    data = StudyData.from_frames(ratings)
    pairs = repeat_pairs(ratings).set_index(["stimulus_id", "rater"])
    rater, stimulus_id = "R04", int(ratings["stimulus_id"].min())
    first, second = pairs.loc[(stimulus_id, rater), ["valence_1", "valence_2"]]
    expected = {"average": (first + second) / 2, "first": first, "newest": second}[policy]
    column = list(data.stimulus_ids).index(stimulus_id)
    assert data.valence[list(data.raters).index(rater), column] == pytest.approx(expected)
    assert any(f"{N_RATERS * N_FACES} rater x stimulus pairs rated more than once" in note
               for note in data.notes)


def test_icc_moves_as_expected_between_policies(sessions, study):
    """Averaging two noisy occasions raises ICC(A,1) above either occasion alone; keeping the
    first equals analysing the first occasion only, keeping the newest the second only."""
    batch = import_text(sessions, study, retest_file(), "average", "retest.csv")
    ratings = analysed(sessions, study)
    by_policy = {policy: icc_a1(ratings.assign(repeat_policy=policy))
                 for policy in ("average", "first", "newest")}
    only = {occasion: icc_a1(ratings.loc[ratings["occurrence"] == occasion]) for occasion in (1, 2)}
    assert by_policy["first"] == pytest.approx(only[1]) and by_policy["newest"] == pytest.approx(only[2])
    assert by_policy["average"] > max(by_policy["first"], by_policy["newest"]) + 0.05
    assert icc_a1(ratings) == pytest.approx(by_policy["average"])  # the stored policy is used
    assert batch == 1


def test_repeats_across_batches_follow_the_newest_batch_policy(sessions, study):
    import_text(sessions, study, retest_file((1,)), "newest", "session1.csv")
    with pytest.raises(RepeatsRefused, match=f"{N_RATERS * N_FACES} rater x stimulus pairs"):
        import_text(sessions, study, retest_file((2,)), "refuse", "session2.csv")
    assert len(analysed(sessions, study)) == N_RATERS * N_FACES  # nothing of the refusal stored
    import_text(sessions, study, retest_file((2,)), "average", "session2.csv")
    ratings = analysed(sessions, study)
    assert ratings.groupby("batch_id")["repeat_policy"].first().tolist() == ["newest", "average"]
    within_file = retest_file()
    assert icc_a1(ratings) == pytest.approx(icc_a1(read_back_as_one_batch(within_file)))


def read_back_as_one_batch(text: str) -> pd.DataFrame:
    """The same ratings as one in-file test-retest batch, averaged (no database)."""
    frame = pd.read_csv(io.StringIO(text))
    frame["valence"] = (frame["valence"] - 5) / 4
    frame["arousal"] = 0.0
    ids = {f"face{f:02d}.png": f + 1 for f in range(N_FACES)}
    return frame.assign(stimulus_id=frame["stimulus"].map(ids), batch_id=1,
                        occurrence=frame.groupby(["stimulus", "rater"]).cumcount() + 1,
                        repeat_policy="average")


def test_refuse_reports_in_file_repeats_as_row_errors(sessions, study):
    with pytest.raises(ValueError, match="rows have problems"):
        import_text(sessions, study, retest_file(), "refuse", "retest.csv")


def test_label_majority_of_a_raters_repeats_with_explicit_ties():
    rows = [("a", "fear", 0.2, 1), ("a", "fear", 0.4, 2), ("a", "anger", 0.9, 3),
            ("b", "fear", 0.0, 1), ("b", "anger", 1.0, 2)]
    ratings = pd.DataFrame([{"stimulus": "s", "stimulus_id": 1, "rater": r, "batch_id": 1,
                             "emotion": e, "valence": v, "arousal": np.nan, "occurrence": k,
                             "repeat_policy": "average"} for r, e, v, k in rows])
    resolved, notes = resolve_repeats(ratings)
    by_rater = resolved.set_index("rater")
    assert by_rater.at["a", "emotion"] == "fear" and by_rater.at["a", "valence"] == pytest.approx(0.5)
    assert by_rater.at["b", "emotion"] is None
    assert "1 pairs' own labels tie" in notes[0]


def test_test_retest_matches_pingouin_on_the_same_pairs(sessions, study):
    import_text(sessions, study, retest_file(), "average", "retest.csv")
    ratings = analysed(sessions, study)
    data = StudyData.from_frames(ratings)
    table = retest_reliability(ratings, data.stimulus_ids, Bootstrap(n_boot=50))
    pairs = repeat_pairs(ratings)
    long = pairs.melt(id_vars=["stimulus_id", "rater"], value_vars=["valence_1", "valence_2"],
                      var_name="occasion", value_name="y")
    long["pair"] = long["rater"] + "/" + long["stimulus_id"].astype(str)
    reference = pingouin.intraclass_corr(long, targets="pair", raters="occasion", ratings="y")
    # pingouin's rows in order: ICC1, ICC2 = ICC(A,1), ICC3 = ICC(C,1), ... (named by version)
    reference = reference["ICC"].to_numpy()
    icc = table.loc[table["dimension"] == "valence"].set_index("form")["estimate"]
    assert icc.filter(like="ICC(C,1)").item() == pytest.approx(reference[2], abs=1e-10)
    assert icc.filter(like="ICC(A,1)").item() == pytest.approx(reference[1], abs=1e-10)
    labels = table.loc[table["dimension"] == "emotion"].set_index("metric")
    same = (pairs["emotion_1"] == pairs["emotion_2"]).mean()
    assert labels.at["accuracy", "estimate"] == pytest.approx(same)
    assert labels.at["accuracy", "n"] == N_RATERS * N_FACES
    observed = pd.crosstab(pairs["emotion_1"], pairs["emotion_2"]).to_numpy(float)
    p = observed / observed.sum()
    chance = (p.sum(axis=1) * p.sum(axis=0)).sum()
    assert labels.at["cohen_kappa", "estimate"] == pytest.approx((np.trace(p) - chance) / (1 - chance))
    report = build_report(ratings, None, None, None, n_boot=0)
    pd.testing.assert_frame_equal(report["test_retest"].drop(columns=["ci_low", "ci_high", "ci_method"])
                                  .iloc[:4], table.drop(columns=["ci_low", "ci_high", "ci_method"]).iloc[:4])


# ---------------------------------------------------------------------------------- votes

def votes_text(counts: np.ndarray, order: list[int]) -> str:
    header = "Image name," + ",".join(EMOTIONS[k] for k in order)
    lines = [f"img{i:02d}.png," + ",".join(str(row[k]) for k in order) for i, row in enumerate(counts)]
    return header + "\n" + "\n".join(lines) + "\n"


def vote_ratings(counts: np.ndarray, order: list[int]) -> pd.DataFrame:
    index = StimulusIndex.build({f"img{i:02d}.png": i + 1 for i in range(len(counts))})
    frame = read_table("votes.csv", votes_text(counts, order).encode())
    prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index)
    assert prepared.ok and prepared.layout == "votes"
    stored = assign_vote_raters(prepared.ratings, batch_id=1)
    return stored.assign(stimulus=stored["stimulus_key"], batch_id=1,
                         stimulus_id=stored["stimulus_id"].astype(int))


def model_predictions(n_items: int) -> pd.DataFrame:
    return pd.DataFrame({"stimulus": [f"img{i:02d}.png" for i in range(n_items)],
                         "stimulus_id": np.arange(1, n_items + 1), "model_id": "m",
                         "label": [EMOTIONS[i % 3] for i in range(n_items)],
                         "valence": np.nan, "arousal": np.nan})


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.permutations(range(8)))
def test_column_order_of_a_votes_file_changes_no_table(seed, order):
    counts = np.random.default_rng(seed).multinomial(10, [0.4, 0.25, 0.15, 0.1, 0.04, 0.03, 0.02, 0.01], 25)
    counts[counts.sum(axis=1) == 0, 0] = 1
    predictions = model_predictions(len(counts))
    reports = [build_report(vote_ratings(counts, columns), predictions, None, None, n_boot=30)
               for columns in (list(range(8)), list(order))]
    for name, table in reports[0].items():
        pd.testing.assert_frame_equal(table, reports[1][name], check_exact=False, rtol=1e-12,
                                      obj=name)
    assert reports[0]["loo"].empty
    assert NOT_APPLICABLE in reports[0]["notes"]["note"].tolist()
    emotion = reports[0]["model_as_rater"].query("dimension == 'emotion'")
    assert emotion["percentile"].isna().all() and emotion["note"].str.contains("no rater identities").all()


def brute_force_ceiling(counts: np.ndarray) -> float:
    """Plain loop: every vote held out once, weighted 1/n, against the others' majority."""
    hits = scored = 0.0
    for row in counts:
        n = row.sum()
        for label in np.repeat(np.arange(len(row)), row):
            others = row.copy()
            others[label] -= 1
            top = np.flatnonzero(others == others.max())
            if others.max() > 0 and len(top) == 1:
                scored += 1 / n
                hits += (top[0] == label) / n
    return hits / scored


def test_counts_ceiling_equals_a_plain_loop_over_held_out_votes():
    counts = np.random.default_rng(5).multinomial(9, [0.3, 0.3, 0.2, 0.1, 0.05, 0.03, 0.01, 0.01], 60)
    data = StudyData.from_frames(vote_ratings(counts, list(range(8))))
    table = counts_ceiling(data, Bootstrap(n_boot=100)).set_index("metric")
    assert table.at["accuracy", "estimate"] == pytest.approx(brute_force_ceiling(data.vote_counts().astype(int)))
    assert table.at["accuracy", "ci_low"] <= table.at["accuracy", "estimate"] <= table.at["accuracy", "ci_high"]
    assert majority_codes(np.array([[2.0, 2.0]]))[0][0] == -1  # ties stay unresolved


def test_cli_shows_repeats_and_refuses_or_imports_them(sessions, study, db_url, tmp_path):
    source = tmp_path / "retest.csv"
    source.write_text(retest_file())
    command = [sys.executable, "-m", "core", "--db", db_url, "import-ratings", "--study", "retest",
               str(source), "--valence-scale", "sam9", "--arousal-scale", "sam9"]
    refused = subprocess.run([*command, "--repeats", "refuse"], capture_output=True, text=True)
    assert refused.returncode == 1 and "more than once" in refused.stdout + refused.stderr
    imported = subprocess.run([*command, "--repeats", "first"], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert (f"repeated ratings: {N_RATERS * N_FACES} rater x stimulus pairs rated more than once "
            "(0 of them in earlier batches); policy 'first'") in imported.stdout
    assert set(analysed(sessions, study)["repeat_policy"]) == {"first"}
