"""Confusion: which emotions each model mixes up, against the human majority or the intended label."""

import pandas as pd
import streamlit as st

from core.reporting import charts
from ui.chrome import page_setup
from ui.text import plain
from ui.downloads import analysis_context, no_models_message, show_chart, show_table

REFERENCES = {"human_majority": "human majority label", "intended": "intended emotion"}
SCOPES = {
    "all": "all stimuli (a label the model cannot output counts as an error)",
    "outputtable": "only stimuli whose label the model can output",
}
HUMAN_PREDICTOR = "human_majority"


def predictor_name(model_id: str, pipelines: dict[str, str]) -> str:
    if model_id == HUMAN_PREDICTOR:
        return "human majority (vs intended emotion)"
    return charts.model_label(model_id, pipelines.get(model_id))


def seven_class_note(models: pd.DataFrame, model_id: str) -> None:
    """Say plainly when a model cannot output some canonical labels (e.g. contempt)."""
    row = models[models["model_id"] == model_id]
    if row.empty or not str(row["cannot_output"].iloc[0]):
        return
    missing, n_labels = row["cannot_output"].iloc[0], int(row["n_labels"].iloc[0])
    st.warning(
        f"{plain(model_id)} has {n_labels:,} classes and cannot output: {plain(missing)}. Rows for those labels "
        "can only be errors; recall there is 0 by construction, not a failure to recognise it. "
        "Scope 'outputtable' in the recall chart leaves those stimuli out."
    )


factory, study_id = page_setup("Confusion")
context = analysis_context(factory, study_id, key="confusion")
confusion, recall, models = context.tables["confusion"], context.tables["recall"], context.tables["models"]
if not context.has_models:
    no_models_message()
if confusion.empty:
    st.info(
        "Nothing to cross-tabulate yet: confusion needs model predictions, or stimuli with an "
        "intended emotion (then the human majority is compared with it)."
    )
    st.stop()

predictors = list(dict.fromkeys(confusion["model_id"].astype(str)))
left, right = st.columns(2)
model_id = left.selectbox(
    "Model", predictors, format_func=lambda m: predictor_name(m, context.pipelines), key="confusion-model"
)
references = [r for r in REFERENCES if r in set(confusion.loc[confusion["model_id"] == model_id, "reference"])]
reference = right.radio(
    "Compare with", references, format_func=REFERENCES.get, horizontal=True, key="confusion-reference"
)
seven_class_note(models, model_id)

cells = confusion[(confusion["model_id"] == model_id) & (confusion["reference"] == reference)]
true_title = "Intended emotion" if reference == "intended" else "Human majority"
pred_title = "Human majority" if model_id == HUMAN_PREDICTOR else "Model prediction"
heatmap = context.chart(("confusion", model_id, reference), lambda: charts.confusion_heatmap(
    cells, true_title=true_title, pred_title=pred_title,
    title=f"{predictor_name(model_id, context.pipelines)} vs {REFERENCES[reference]}",
))
st.caption("Colour: share of the row (each row sums to 1); numbers: stimuli in the cell.")
show_chart(heatmap, f"confusion_{model_id}_{reference}", key="confusion-heatmap")

st.subheader("Per-emotion recall")
scope = st.radio("Scope", list(SCOPES), format_func=SCOPES.get, horizontal=True, key="confusion-scope")
shown = recall[(recall["reference"] == reference) & (recall["scope"] == scope)]
if model_id != HUMAN_PREDICTOR:
    shown = shown[shown["model_id"] != HUMAN_PREDICTOR]
else:
    shown = shown[shown["model_id"] == HUMAN_PREDICTOR]
shown = shown.assign(model=[predictor_name(m, context.pipelines) for m in shown["model_id"]])
if shown.empty:
    st.caption("No recall estimates for this choice.")
else:
    bars = context.chart(("recall", model_id == HUMAN_PREDICTOR, reference, scope), lambda: charts.recall_bars(
        shown, model_col="model", title=f"Recall per {REFERENCES[reference]} ({scope} stimuli)"
    ))
    show_chart(bars, f"recall_{reference}_{scope}", key="confusion-recall")
    for note in shown.loc[shown["note"].astype(str) != "", ["model_id", "emotion", "note"]].itertuples():
        st.caption(f"{plain(note.model_id)}, {plain(note.emotion)}: {plain(note.note)}")

show_table(cells, "Confusion counts", key="confusion-cells",
           caption=f"Confusion counts and row shares of {model_id} vs the {REFERENCES[reference]}.")
show_table(shown.drop(columns=["model"]), "Per-emotion recall", key="confusion-recall-table",
           caption=f"Per-emotion recall vs the {REFERENCES[reference]} ({scope} stimuli), 95% bootstrap CIs.")
