"""Circumplex: human and model valence-arousal positions of every stimulus on one plane."""

import streamlit as st

from core.reporting import charts
from ui.chrome import page_setup
from ui.downloads import analysis_context, no_models_message, show_chart, show_table

ALL_MODELS = "__all__"
HUMANS_ONLY = "__humans__"
CONSENSUS_COLUMNS = [
    "stimulus_id", "stimulus", "n_raters", "majority_label", "majority_share", "is_tie",
    "intended_emotion", "valence_mean", "valence_sd", "valence_n", "arousal_mean", "arousal_sd", "arousal_n",
]

factory, study_id = page_setup("Circumplex")
context = analysis_context(factory, study_id, key="circumplex")
consensus = context.tables["consensus"]
if consensus[["valence_mean", "arousal_mean"]].isna().all().all():
    st.info("The ratings of this study have no valence/arousal values: the circumplex needs both.")
    st.stop()

predictions = context.frames.predictions
if context.filters.model_ids is not None:
    predictions = predictions[predictions["model_id"].isin(context.filters.model_ids)]
model_ids = sorted(predictions.dropna(subset=["valence", "arousal"])["model_id"].astype(str).unique())
if not context.has_models:
    no_models_message()
elif not model_ids:
    st.info("None of the selected models outputs valence and arousal; showing the human ratings.")

options = [HUMANS_ONLY, *model_ids] + ([ALL_MODELS] if len(model_ids) > 1 else [])
names = {HUMANS_ONLY: "humans only", ALL_MODELS: "all models (pick one in the chart)"}
left, right = st.columns([3, 1])
chosen = left.selectbox(
    "Model", options, index=1 if model_ids else 0, key="circumplex-model",
    format_func=lambda m: names.get(m) or charts.model_label(m, context.pipelines.get(m)),
)
centroids = right.checkbox("Emotion centroids", value=True, key="circumplex-centroids")
if chosen == HUMANS_ONLY:
    shown = None
elif chosen == ALL_MODELS:
    shown = predictions[predictions["model_id"].isin(model_ids)]
else:
    shown = predictions[predictions["model_id"] == chosen]

st.caption(
    "Circles: human mean per stimulus, coloured by the human majority label, with ±1 SD lines "
    "for valence and arousal. Triangles: the model's output, joined to the human mean of the "
    "same stimulus. Diamonds: mean position of the stimuli of each human-majority emotion. "
    "Hover a point for the stimulus and its values. Axes fixed to [-1, 1]; dashed: unit circle."
)
title = "Humans" if shown is None else f"Humans vs {names.get(chosen) or chosen}"
chart = context.chart(
    ("circumplex", chosen, centroids),
    lambda: charts.circumplex_chart(consensus, shown, centroids=centroids, title=title),
)
show_chart(chart, f"circumplex_{'humans' if shown is None else chosen}", key="circumplex-chart")

show_table(consensus[CONSENSUS_COLUMNS], "Human consensus", key="circumplex-consensus",
           caption="Human consensus per stimulus: majority label, mean and SD of valence and arousal.")
continuous = context.tables["model_continuous"]
if not continuous.empty:
    show_table(continuous, "Valence and arousal vs humans", key="circumplex-continuous",
               caption="Model valence and arousal against the human mean rating (95% bootstrap CIs).")
