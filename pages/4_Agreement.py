"""Agreement: the human ceiling first, then every model beside it, then subgroups."""

import pandas as pd
import streamlit as st

from core.reporting import charts
from ui.chrome import page_setup
from ui.text import plain
from ui.downloads import (
    AnalysisContext,
    analysis_context,
    estimate_choice,
    html_report_download,
    no_models_message,
    show_chart,
    show_table,
    subgroup_selector,
    workbook_download,
)

METRIC_NAMES = {
    "ccc": "CCC", "pearson_r": "Pearson r", "rmse": "RMSE", "mae": "MAE", "mean_bias": "mean bias",
    "accuracy": "accuracy", "cohen_kappa": "Cohen's kappa", "macro_f1": "macro-F1",
    "krippendorff_alpha_interval": "Krippendorff's alpha (interval)",
    "krippendorff_alpha_nominal": "Krippendorff's alpha (nominal)",
}
CEILING_COLUMNS = {"estimate": "human_median", "human_q25": "human_q25", "human_q75": "human_q75"}


def metric_label(dimension: str, metric: str) -> str:
    return f"{dimension} · {METRIC_NAMES.get(metric, metric)}"


def pick(frame: pd.DataFrame, **equal: object) -> pd.DataFrame:
    """Rows whose columns equal the given values."""
    mask = pd.Series(True, index=frame.index)
    for column, value in equal.items():
        mask &= frame[column] == value
    return frame[mask]


def first_estimate(rows: pd.DataFrame) -> float | None:
    """The first row's estimate; ``None`` without rows or without an estimate (no tile then)."""
    if rows.empty or pd.isna(rows["estimate"].iloc[0]):
        return None
    return float(rows["estimate"].iloc[0])


def with_ceiling(table: pd.DataFrame, ceiling: pd.DataFrame) -> pd.DataFrame:
    """The human leave-one-rater-out median and IQR beside each model row of the same metric."""
    if table.empty or ceiling.empty:
        return table
    beside = ceiling[["dimension", "metric", *CEILING_COLUMNS]].rename(columns=CEILING_COLUMNS)
    return table.merge(beside, on=["dimension", "metric"], how="left")


def human_ceiling_section(context: AnalysisContext) -> None:
    tables = context.tables
    st.markdown(
        "How well do human raters agree with each other? This is the yardstick: a model that "
        "agrees with the panel as well as a typical rater reaches the human ceiling."
    )
    fleiss, alpha, icc = tables["fleiss"], tables["alpha"], tables["icc"]
    cells = st.columns(4)
    kappa = first_estimate(pick(fleiss, metric="fleiss_kappa"))
    if kappa is not None:
        cells[0].metric("Fleiss' kappa (labels)", f"{kappa:.2f}")
    nominal = first_estimate(pick(alpha, dimension="emotion"))
    if nominal is not None:
        cells[1].metric("Krippendorff's alpha (labels)", f"{nominal:.2f}")
    for cell, dimension in zip(cells[2:], ("valence", "arousal")):
        value = first_estimate(pick(icc, dimension=dimension, form="ICC(A,1)"))
        if value is not None:
            cell.metric(plain(f"ICC(A,1) = ICC(2,1), {dimension}"), f"{value:.2f}")

    ceiling, loo = tables["ceiling"], tables["loo"]
    st.subheader("Leave-one-rater-out: each rater against the others")
    if not ceiling.empty:
        dimension, metric = estimate_choice(
            "Metric", ceiling, ("dimension", "metric"), format_func=lambda o: metric_label(*o),
            key="agreement-loo-metric",
        )
        chart = context.chart(("loo", dimension, metric), lambda: charts.forest_plot(
            pick(loo, dimension=dimension, metric=metric), ceiling=charts.ceiling_band(ceiling, dimension, metric),
            label_col="rater", metric=METRIC_NAMES.get(metric, metric),
            title=f"Human raters vs the others: {dimension}",
        ))
        show_chart(chart, f"human_loo_{dimension}_{metric}", key="agreement-loo-chart")
    show_table(ceiling, "Human ceiling", key="agreement-ceiling",
               caption="Human ceiling: median leave-one-rater-out score (95% bootstrap CI) and the raters' spread.")
    show_table(loo, "Leave-one-rater-out", key="agreement-loo",
               caption="Each rater against the mean (valence, arousal) or majority (labels) of the other raters.")
    st.subheader("Reliability of the panel")
    show_table(fleiss, "Fleiss kappa", key="agreement-fleiss",
               caption="Fleiss' kappa and per-category kappas of the human labels.")
    show_table(alpha, "Krippendorff alpha", key="agreement-alpha",
               caption="Krippendorff's alpha: nominal for labels, interval for valence and arousal.")
    st.caption("ICC forms are named in both conventions: McGraw-Wong (pingouin 0.7) = Shrout-Fleiss (legacy pingouin).")
    show_table(icc, "ICC", key="agreement-icc", lead=("dimension", "label", "estimate", "description"),
               compact=("dimension", "label", "estimate", "F", "df1", "df2", "p", "n", "k"),
               caption="Intraclass correlations of human valence and arousal (all six forms, F test, exact 95% CI).")


def labelled(frame: pd.DataFrame, pipelines: dict[str, str]) -> pd.DataFrame:
    """Rows with a ``model`` column reading ``pipeline · model id``."""
    return frame.assign(model=[charts.model_label(m, pipelines.get(m)) for m in frame["model_id"]])


def models_section(context: AnalysisContext) -> None:
    tables, pipelines = context.tables, context.pipelines
    ceiling, loo, as_rater = tables["ceiling"], tables["loo"], tables["model_as_rater"]
    st.markdown(
        "Each model scored like one more rater (against all human raters), beside the human "
        "raters' own leave-one-out scores; the percentile says where the model falls among them."
    )
    if not as_rater.empty:
        dimension, metric = estimate_choice(
            "Metric", as_rater, ("dimension", "metric"), format_func=lambda o: metric_label(*o),
            key="agreement-model-metric",
        )
        rows = labelled(pick(as_rater, dimension=dimension, metric=metric), pipelines)
        chart = context.chart(("models", dimension, metric), lambda: charts.forest_plot(
            rows, ceiling=charts.ceiling_band(ceiling, dimension, metric),
            human_scores=pick(loo, dimension=dimension, metric=metric), label_col="model",
            metric=METRIC_NAMES.get(metric, metric), title=f"Models vs human ceiling: {dimension}",
        ))
        show_chart(chart, f"models_vs_ceiling_{dimension}_{metric}", key="agreement-model-chart")
        notes = rows.loc[rows["note"].astype(str) != "", ["model_id", "note"]].drop_duplicates()
        for note in notes.itertuples():
            st.caption(f"{plain(note.model_id)}: {plain(note.note)}")
    show_table(as_rater, "Model as one more rater", key="agreement-as-rater",
               compact=("model_id", "dimension", "metric", "estimate", "percentile", *CEILING_COLUMNS.values(), "n"),
               caption="Each model's score against the human raters and its percentile among the raters' leave-one-out scores.")
    show_table(with_ceiling(tables["model_continuous"], ceiling), "Valence and arousal vs humans",
               key="agreement-continuous", compact=("model_id", "dimension", "metric", "estimate",
                                                    *CEILING_COLUMNS.values(), "n"),
               caption="Model valence and arousal against the human mean rating, with the human ceiling (median and IQR).")
    st.caption(
        "Labels: scope 'all' scores a human label the model cannot output (contempt for "
        "7-class models) as an error; scope 'outputtable' leaves those stimuli out (n_excluded)."
    )
    labels = tables["model_labels"]
    majority = with_ceiling(pick(labels, reference="human_majority").assign(dimension="emotion"), ceiling)
    show_table(pd.concat([majority, pick(labels, reference="intended")], ignore_index=True),
               "Labels vs humans", key="agreement-labels",
               compact=("model_id", "reference", "scope", "metric", "estimate", "human_median", "n", "n_excluded"),
               caption="Model labels against the human majority label and the intended emotion.")
    show_table(tables["panel_reliability"], "Panel with and without each model", key="agreement-panel",
               lead=("model_id", "dimension", "metric", "panel", "estimate"),
               compact=("model_id", "dimension", "metric", "panel", "estimate", "n"),
               caption="ICC(A,1) and Krippendorff's alpha of the human panel, and with the model as one more rater.")


def subgroup_section(context: AnalysisContext) -> None:
    tables, pipelines = context.tables, context.pipelines
    groups, gaps = tables["subgroups"], tables["subgroup_gaps"]
    attributes = sorted(groups["attribute"].astype(str).unique()) if not groups.empty else []
    attribute = subgroup_selector(attributes, key="agreement-subgroup")
    if attribute is None:
        return
    groups, gaps = pick(groups, attribute=attribute), pick(gaps, attribute=attribute)
    dimension, metric = estimate_choice(
        "Metric", groups, ("dimension", "metric"), format_func=lambda o: metric_label(*o),
        key="agreement-subgroup-metric",
    )
    chart = context.chart(("subgroups", attribute, dimension, metric), lambda: charts.subgroup_gap_chart(
        labelled(pick(groups, dimension=dimension, metric=metric), pipelines),
        labelled(pick(gaps, dimension=dimension, metric=metric), pipelines),
        label_col="model", metric=METRIC_NAMES.get(metric, metric),
        title=f"{metric_label(dimension, metric)} by {attribute}",
    ))
    show_chart(chart, f"subgroups_{attribute}_{dimension}_{metric}", key="agreement-subgroup-chart")
    st.caption("Rows 'humans' are the human panel's own reliability within each group (the ceiling per group).")
    show_table(groups, f"Subgroups by {attribute}", key="agreement-subgroups",
               lead=("group", "model_id", "dimension", "metric", "estimate"),
               caption=f"Agreement per value of {attribute} (bootstrap CIs over stimuli).")
    show_table(gaps, f"Gaps by {attribute}", key="agreement-gaps",
               lead=("group_a", "group_b", "model_id", "dimension", "metric", "estimate"),
               caption=f"Differences between groups of {attribute} (group a minus group b) with bootstrap CIs.")


factory, study_id = page_setup("Agreement")
context = analysis_context(factory, study_id, key="agreement")
tables = context.tables
ratings = context.frames.ratings
st.caption(
    f"{ratings['stimulus_id'].nunique():,} stimuli, {ratings['rater'].nunique():,} raters, "
    f"{len(ratings):,} ratings; {len(tables['models'])} model(s) with predictions. "
    f"CIs: {context.settings.n_boot:,} bootstrap resamples of stimuli (seed {context.settings.seed:d})."
)
workbook_download(tables, "agreement_tables", key="agreement-all")
html_report_download(context, "FaceAgree agreement report")

ceiling_tab, models_tab, subgroups_tab, notes_tab = st.tabs(
    ["Human ceiling", "Models vs humans", "Subgroups", "Notes"]
)
with ceiling_tab:
    human_ceiling_section(context)
with models_tab:
    if context.has_models:
        models_section(context)
    else:
        no_models_message()
with subgroups_tab:
    subgroup_section(context)
with notes_tab:
    show_table(tables["models"], "Models analysed", key="agreement-models",
               caption="Models analysed: pipeline, labels they can output, coverage.")
    show_table(tables["notes"], "Notes", key="agreement-notes",
               caption="Data-handling decisions and statistical settings of this report.")
