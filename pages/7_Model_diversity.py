"""Model diversity: do models from different training pipelines err differently?"""

import streamlit as st

from core.reporting import charts
from ui.chrome import page_setup
from ui.text import plain
from ui.downloads import analysis_context, no_models_message, show_chart, show_table

MATRICES = (
    ("valence", "ccc", "CCC valence"),
    ("arousal", "ccc", "CCC arousal"),
    ("emotion", "cohen_kappa", "Cohen's kappa (labels)"),
)
MODEL_COLUMNS = ["model_id", "name", "pipeline", "source", "architecture", "training_data", "strategy", "classes"]

factory, study_id = page_setup("Model diversity")
context = analysis_context(factory, study_id, key="diversity")
pairs = context.tables["model_vs_model"]
if not context.has_models:
    no_models_message()
    st.stop()
if len(context.tables["models"]) < 2:
    st.info("Model diversity compares models with each other: it needs predictions of at least two models.")
if pairs.empty:
    st.stop()
# Pipelines as the engine recorded them (the human consensus is pipeline "human").
pipelines = {**context.pipelines, **dict(zip(pairs["model_a"], pairs["pipeline_a"].astype(str)))}

st.markdown(
    "Pairwise agreement between models on the same stimuli. Axis labels read "
    "`pipeline · model`, sorted by pipeline: blocks on the diagonal are models of one training "
    "pipeline. Lower agreement across pipelines than within means the pipelines err differently. "
    "The human consensus (mean rating, majority label) joins as one more member."
)
for dimension, metric, title in MATRICES:
    matrix = pairs[(pairs["dimension"] == dimension) & (pairs["metric"] == metric)]
    if matrix["estimate"].isna().all():  # no rows, or a dimension no model outputs (labels-only data)
        st.caption(f"{plain(title)}: no model pair has outputs for this.")
        continue
    chart = context.chart(
        ("diversity", dimension, metric),
        lambda: charts.model_heatmap(matrix, pipelines=pipelines, metric=title, title=title),
    )
    show_chart(chart, f"model_vs_model_{dimension}_{metric}", key=f"diversity-{dimension}")

show_table(pairs, "Model vs model", key="diversity-pairs",
           caption="Pairwise model agreement (CCC on valence and arousal, Cohen's kappa on labels), 95% bootstrap CIs.")
analysed = context.tables["models"]["model_id"]
described = context.frames.models
described = described[described["model_id"].isin(analysed)]
if not described.empty:
    show_table(described[[c for c in MODEL_COLUMNS if c in described]], "Models and pipelines",
               key="diversity-models", caption="Models compared and their training pipelines.")
