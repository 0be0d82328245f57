"""Disagreements: the stimuli where models miss the humans, or disagree among themselves, most."""

import base64

import pandas as pd
import streamlit as st

from core.access import may_see_faces
from core.agreement.data import LABELS, STIMULUS_BASE_COLUMNS
from core.agreement.disagreement import (
    ACROSS,
    MODEL_HUMAN_METRICS,
    MODEL_MODEL_METRICS,
    disagreement_table,
    metrics_with_values,
    side_by_side,
)
from core.io.images import blurred_thumbnail
from core.reporting.charts import model_label
from db import stimuli as stimulus_db
from ui.chrome import db_key, page_setup, role
from ui.downloads import analysis_context, no_models_message, table_downloads
from ui.text import plain

KINDS = {"human": "Models vs humans", "models": "Models with each other"}
METRICS = {
    "va_distance": "|V/A difference| (distance in the valence-arousal plane)",
    "valence_abs_diff": "|valence difference|",
    "arousal_abs_diff": "|arousal difference|",
    "jsd": "JSD: label probabilities vs human vote shares",
    "majority_mismatch": "label differs from the human majority",
    "intended_mismatch": "label differs from the intended emotion",
    "valence_sd": "SD of valence",
    "arousal_sd": "SD of arousal",
    "distinct_label_share": "share of distinct labels",
    "mean_pairwise_jsd": "mean pairwise JSD of label probabilities",
}
NO_VALUES = " (no values in this study)"
ACROSS_NAMES = {"models": "models", "pipelines": "pipelines (mean of their models)"}
EMOTION_SOURCES = {"majority_label": "human majority", "intended_emotion": "intended emotion"}
ALL_MODELS = "__all__"
NO_ATTRIBUTE = "__none__"
DEFAULT_SHOWN = 20
MAX_SHOWN = 100
GRID_COLUMNS = 6
MAX_CACHED = 8  # one all-models ranking of a FER+-size study is ~74 MB


@st.cache_data(show_spinner="Ranking stimuli…", max_entries=MAX_CACHED)
def ranked(key: tuple, _consensus: pd.DataFrame, _predictions: pd.DataFrame, _models: pd.DataFrame,
           by: str, across: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ranking and its side-by-side view; ``key`` (report key plus every filter) names the
    inputs, so the frames themselves are not hashed."""
    ranking = disagreement_table(_consensus, _predictions, _models, by=by, across=across)
    return ranking, side_by_side(ranking, _consensus, _predictions)


@st.cache_data(show_spinner=False, max_entries=MAX_CACHED)
def thumbnails(db: str, study_id: int, stimulus_ids: tuple[int, ...], faces: bool) -> dict[int, str]:
    """Data URLs of the stored thumbnails; blurred unless ``faces`` (the originals never leave
    the server for a viewer who may not see them)."""
    urls = {}
    with factory() as session:
        for stimulus_id in stimulus_ids:
            stimulus = stimulus_db.get_stimulus(session, stimulus_id)
            if stimulus is None or stimulus.study_id != study_id or not stimulus.thumbnail:
                continue
            try:
                picture = stimulus.thumbnail if faces else blurred_thumbnail(stimulus.thumbnail)
            except OSError:  # an unreadable thumbnail is left out, never shown unblurred
                continue
            urls[stimulus_id] = "data:image/jpeg;base64," + base64.b64encode(picture).decode("ascii")
    return urls


def faces_shown() -> bool:
    with factory() as session:
        return may_see_faces(role(), stimulus_db.get_study(session, study_id).reviewers_see_faces)


def choose_stimuli(consensus: pd.DataFrame, stimuli: pd.DataFrame) -> tuple[pd.DataFrame, tuple]:
    """Emotion and subgroup filters on the consensus; returns it and the choices (a cache key)."""
    source_col, emotion_col, attribute_col, value_col = st.columns(4)
    source = source_col.selectbox("Emotion of", list(EMOTION_SOURCES), format_func=EMOTION_SOURCES.get,
                                  key="disagreements-emotion-source")
    emotions = emotion_col.multiselect("Emotions", list(LABELS), key="disagreements-emotions",
                                       placeholder="all emotions")
    attributes = [c for c in stimuli.columns if c not in STIMULUS_BASE_COLUMNS]
    attribute = attribute_col.selectbox(
        "Subgroup attribute", [NO_ATTRIBUTE, *attributes], key="disagreements-attribute",
        format_func=lambda a: "all stimuli" if a == NO_ATTRIBUTE else a,
    )
    values: list[str] = []
    if attribute != NO_ATTRIBUTE:
        options = sorted(stimuli[attribute].dropna().astype(str).unique())
        values = value_col.multiselect("Values", options, key="disagreements-values", placeholder="all values")
    chosen = consensus
    if emotions:
        chosen = chosen[chosen[source].isin(emotions)]
    if values:
        ids = stimuli.loc[stimuli[attribute].astype(str).isin(values), "stimulus_id"]
        chosen = chosen[chosen["stimulus_id"].isin(ids)]
    return chosen, (source, tuple(emotions), attribute, tuple(values))


def vote_text(row: pd.Series) -> str:
    shares = sorted(((row[f"share_{label}"], label) for label in LABELS if row[f"share_{label}"] > 0), reverse=True)
    return " · ".join(f"{label} {share:.2f}" for share, label in shares)


def mean_sd_text(row: pd.Series, dimension: str) -> str:
    mean, sd = row[f"{dimension}_mean"], row[f"{dimension}_sd"]
    return "" if pd.isna(mean) else f"{mean:+.2f}" + ("" if pd.isna(sd) else f" ± {sd:.2f}")


def output_text(row: pd.Series, model_id: str) -> str:
    label, p = row.get(f"{model_id} label"), row.get(f"{model_id} p(label)")
    valence, arousal = row.get(f"{model_id} valence"), row.get(f"{model_id} arousal")
    parts = []
    if pd.notna(label):
        parts.append(str(label) + ("" if pd.isna(p) else f" {p:.2f}"))
    if pd.notna(valence) or pd.notna(arousal):
        parts.append(f"V {valence:+.2f} A {arousal:+.2f}")
    return " · ".join(parts) or "—"


def gallery(top: pd.DataFrame, urls: dict[int, str]) -> None:
    """The top stimuli's thumbnails in rank order, captioned with rank and disagreement."""
    rows = list(top.itertuples(index=False))
    for start in range(0, len(rows), GRID_COLUMNS):
        for column, row in zip(st.columns(GRID_COLUMNS), rows[start : start + GRID_COLUMNS]):
            score = "—" if pd.isna(row.stimulus_disagreement) else f"{row.stimulus_disagreement:.3f}"
            if int(row.stimulus_id) in urls:
                column.image(urls[int(row.stimulus_id)], width="stretch")
            column.caption(f"#{row.rank:d} {plain(row.stimulus)} · {plain(score)}")


def display(wide: pd.DataFrame, model_ids: list[str]) -> pd.DataFrame:
    """The top rows as read on screen: one text cell per model; raw numbers stay in the downloads."""
    rows = wide.apply(lambda row: {
        "rank": row["rank"], "stimulus": row["stimulus"],
        "disagreement": row["stimulus_disagreement"], "human majority": row["majority_label"],
        "intended": row["intended_emotion"], "human votes": vote_text(row),
        "valence (mean ± SD)": mean_sd_text(row, "valence"), "arousal (mean ± SD)": mean_sd_text(row, "arousal"),
        **{model_label(m, context.pipelines.get(m)): output_text(row, m) for m in model_ids},
    }, axis=1)
    return pd.DataFrame(list(rows))


factory, study_id = page_setup("Disagreements")
context = analysis_context(factory, study_id, key="disagreements")
if not context.has_models:
    no_models_message()
    st.stop()
st.markdown(
    "Find and explain failure cases: stimuli ranked by how far the models are from the human "
    "consensus, or by how much the models (or pipelines) disagree with each other. Rank 1 is the "
    "largest disagreement; stimuli without a value come last."
)
predictions = context.frames.predictions
if context.filters.model_ids is not None:
    predictions = predictions[predictions["model_id"].isin(context.filters.model_ids)]
model_ids = sorted(predictions["model_id"].astype(str).unique())

kind_col, metric_col, member_col = st.columns([2, 3, 2])
kind = kind_col.radio("Disagreement", list(KINDS), format_func=KINDS.get, horizontal=True, key="disagreements-kind")
metrics = MODEL_HUMAN_METRICS if kind == "human" else MODEL_MODEL_METRICS
with_values = metrics_with_values(context.tables["consensus"], predictions)
by = metric_col.selectbox(
    "Rank by", metrics, index=next((i for i, m in enumerate(metrics) if m in with_values), 0),
    format_func=lambda m: METRICS[m] + ("" if m in with_values else NO_VALUES), key=f"disagreements-by-{kind}",
)
across = "models"
if kind == "human":
    model = member_col.selectbox(
        "Model", [ALL_MODELS, *model_ids], key="disagreements-model",
        format_func=lambda m: "mean over the selected models" if m == ALL_MODELS else model_label(m, context.pipelines.get(m)),
    )
    if model != ALL_MODELS:
        predictions = predictions[predictions["model_id"] == model]
else:
    model = ALL_MODELS
    across = member_col.radio("Spread across", ACROSS, format_func=ACROSS_NAMES.get, horizontal=True,
                              key="disagreements-across")
    members = {context.pipelines.get(m, "unknown") for m in model_ids} if across == "pipelines" else model_ids
    if len(members) < 2:
        st.info(f"Disagreement across {plain(across)} needs outputs of at least two {plain(across)}: the selected "
                f"models have {len(members)}, so every spread is undefined (shown empty).")
consensus, stimulus_choices = choose_stimuli(context.tables["consensus"], context.frames.stimuli)
models = pd.DataFrame({"model_id": model_ids, "pipeline": [context.pipelines.get(m, "unknown") for m in model_ids]})
ranking, wide = ranked((*context.key, stimulus_choices, model), consensus, predictions, models, by, across)
if wide.empty:
    st.info("No stimulus with model outputs matches the filters.")
    st.stop()

shown_models = sorted(ranking["model_id"].unique()) if "model_id" in ranking else model_ids
n_shown = st.number_input("Stimuli shown", 1, MAX_SHOWN, min(DEFAULT_SHOWN, len(wide)), key="disagreements-shown")
top = wide.head(int(n_shown))
faces = faces_shown()
urls = thumbnails(db_key(factory), study_id, tuple(int(s) for s in top["stimulus_id"]), faces)
st.caption(
    f"{len(wide):,} stimuli ranked by {METRICS[by]}"
    + (" (mean over the models: for a label mismatch, the share of models that miss)" if kind == "human" and model == ALL_MODELS else "")
    + f"; the top {len(top):,} shown. Model cells: label and its probability · valence and arousal."
    + ("" if faces else " Face images are hidden from reviewers in this study: blurred thumbnails only.")
)
gallery(top, urls)
st.dataframe(display(top, shown_models), hide_index=True, width="stretch",
             column_config={"disagreement": st.column_config.NumberColumn(format="%.3f")})
table_downloads(wide, "disagreements_side_by_side", key="disagreements-wide",
                caption="Stimuli ranked by disagreement: human consensus and every model's output side by side.")
table_downloads(ranking, f"disagreements_{by}", key="disagreements-long",
                caption="Disagreement per stimulus and model (or per stimulus across models), ranked.")
