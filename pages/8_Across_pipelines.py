"""Across pipelines: do the findings hold beyond one training pipeline?

Paired model comparisons, pipelines as the unit, replication of findings per pipeline, rater
planning, test-retest reliability and the methods text; the sidebar picks the consensus
model's representatives and the subgroup finding to replicate.
"""

import pandas as pd
import streamlit as st

from core.agreement.data import STIMULUS_BASE_COLUMNS
from core.agreement.pipelines import NOT_PIPELINES, default_representatives
from core.reporting import charts
from core.reporting.methods import methods_text
from ui.analysis_data import Filters, StudyFrames
from ui.chrome import page_setup
from ui.downloads import (
    AnalysisContext,
    analysis_context,
    display_frame,
    estimate_choice,
    leading,
    no_models_message,
    show_chart,
    show_table,
    table_downloads,
    workbook_download,
)
from ui.text import plain

ALPHA = 0.05
LEAVE_OUT = "(leave out)"
DEFAULT_GAPS = "(every two-valued attribute)"
MAX_GROUPS = 12
SIGNIFICANT_COLOR = "background-color: rgba(255, 200, 0, 0.25)"
METRIC_NAMES = {"ccc": "CCC", "pearson_r": "Pearson r", "mae": "MAE", "accuracy": "accuracy",
                "cohen_kappa": "Cohen's kappa", "macro_f1": "macro-F1", "mean_bias": "mean bias"}
DIFFERENCE_LEAD = ("comparison", "model_a", "model_b", "estimate", "p_holm", "holm_significant",
                   "within_human_range", "n")
TABLE_NAMES = ("model_differences", "pipelines", "replication", "rater_planning", "test_retest")


def metric_label(dimension: str, metric: str) -> str:
    return f"{dimension} · {METRIC_NAMES.get(metric, metric)}"


def consensus_choice(frames: StudyFrames, filters: Filters, pipelines: dict[str, str]) -> tuple[str, ...] | None:
    """One representative per pipeline (or none); ``None`` when the choice is the default."""
    predictions = frames.predictions
    if filters.model_ids is not None:
        predictions = predictions[predictions["model_id"].isin(filters.model_ids)]
    predicted = set(predictions["model_id"].astype(str))
    members: dict[str, list[str]] = {}
    for model_id in frames.models["model_id"].astype(str):
        pipeline = pipelines.get(model_id)
        if model_id in predicted and pipeline and pipeline not in NOT_PIPELINES:
            members.setdefault(pipeline, []).append(model_id)
    st.sidebar.markdown("**All-pipelines consensus model**")
    if len(members) < 2:
        st.sidebar.caption("The consensus model needs predictions of models from at least two pipelines.")
        return None
    default = default_representatives(predictions, frames.models)
    chosen = []
    for pipeline, model_ids in members.items():
        options = [*model_ids, LEAVE_OUT]
        pick = st.sidebar.selectbox(
            plain(f"Representative of {pipeline}"), options, key=f"pipelines-consensus-{pipeline}",
            index=next((options.index(m) for m in default if m in options), 0),
        )
        if pick != LEAVE_OUT:
            chosen.append(pick)
    return None if chosen == default else tuple(chosen)


def replication_choice(frames: StudyFrames) -> tuple[tuple[str, str, str], ...] | None:
    """The subgroup finding to replicate (attribute, group a, group b); ``None``: the default."""
    stimuli = frames.stimuli
    attributes = [c for c in stimuli.columns if c not in STIMULUS_BASE_COLUMNS
                  and 2 <= stimuli[c].dropna().astype(str).nunique() <= MAX_GROUPS]
    if not attributes:
        return None
    st.sidebar.markdown("**Replication finding**")
    attribute = st.sidebar.selectbox("Subgroup attribute", [DEFAULT_GAPS, *attributes],
                                     key="pipelines-gap-attribute")
    if attribute == DEFAULT_GAPS:
        return None
    groups = sorted(stimuli[attribute].dropna().astype(str).unique())
    group_a = st.sidebar.selectbox("Group a", groups, key="pipelines-gap-a")
    group_b = st.sidebar.selectbox("Group b (a minus b)", groups, index=1, key="pipelines-gap-b")
    if group_a == group_b:
        st.sidebar.warning("Pick two different groups; showing the default findings.")
        return None
    return ((attribute, group_a, group_b),)


def page_filters(frames: StudyFrames, filters: Filters, pipelines: dict[str, str]) -> Filters:
    return Filters(batch_ids=filters.batch_ids, model_ids=filters.model_ids,
                   consensus_of=consensus_choice(frames, filters, pipelines),
                   replication_gaps=replication_choice(frames))


def metric_picker(table: pd.DataFrame, key: str) -> tuple[str, str]:
    return estimate_choice("Dimension and metric", table, ("dimension", "metric"),
                           format_func=lambda o: metric_label(*o), key=key)


def highlighted(display: pd.DataFrame):
    """Rows whose difference survives Holm's adjustment, shaded."""
    def shade(row: pd.Series) -> list[str]:
        return [SIGNIFICANT_COLOR if row["holm_significant"] else ""] * len(row)

    return display.style.apply(shade, axis=1)


def differences_section(context: AnalysisContext) -> None:
    differences = context.tables["model_differences"]
    st.markdown(
        "Each model minus another model, and each model minus the human ceiling, in agreement "
        "with the humans on the stimuli both cover; paired bootstrap CIs and p-values, "
        "Holm-adjusted within each dimension and metric. Shaded rows: Holm-adjusted p < 0.05. "
        "'within_human_range': the model's CI overlaps the raters' leave-one-out IQR."
    )
    if differences.empty:
        st.caption("Paired comparisons need at least one model with predictions and a human ceiling.")
        return
    dimension, metric = metric_picker(differences, "pipelines-differences-metric")
    rows = differences[(differences["dimension"] == dimension) & (differences["metric"] == metric)]
    rows = rows.assign(holm_significant=rows["p_holm"] < ALPHA)
    display = display_frame(rows)
    st.dataframe(highlighted(display), hide_index=True, width="stretch",
                 column_order=leading(display, DIFFERENCE_LEAD))
    table_downloads(rows, f"model_differences_{dimension}_{metric}", key="pipelines-differences",
                    caption=f"Paired differences in {metric_label(dimension, metric)} (95% bootstrap CI, Holm-adjusted p).")


def pipelines_section(context: AnalysisContext) -> None:
    table = context.tables["pipelines"]
    st.markdown(
        "Each pipeline's agreement (mean over its models), and the spread between pipelines (SD "
        "of the pipeline means) beside the spread within them (SD of one pipeline's models). "
        "An SD near 0 reads as 'how large at most'."
    )
    if table.empty:
        st.caption("Pipeline summaries need model predictions.")
        return
    dimension, metric = metric_picker(table, "pipelines-summary-metric")
    rows = table[(table["dimension"] == dimension) & (table["metric"] == metric)]
    pooled = rows[rows["pipeline"] == "all pipelines"].set_index("statistic")
    cells = st.columns(3)
    for cell, (statistic, label) in zip(cells, (("mean", "mean of pipelines"), ("between_pipeline_sd", "between-pipeline SD"),
                                                ("within_pipeline_sd", "within-pipeline SD"))):
        if statistic in pooled.index and pd.notna(pooled.loc[statistic, "estimate"]):
            cell.metric(plain(label), f"{pooled.loc[statistic, 'estimate']:.3f}")
    show_table(rows, f"Pipelines: {metric_label(dimension, metric)}", key="pipelines-summary",
               lead=("pipeline", "statistic", "estimate", "n_models", "models"),
               caption="Per pipeline: mean over its models; all pipelines: mean of pipeline means, SD between and within.")


def replication_section(context: AnalysisContext) -> None:
    table = context.tables["replication"]
    st.markdown(
        "A finding (a subgroup gap or the model-minus-human bias) replicates in a pipeline when "
        "its estimate has the pooled sign and its CI excludes 0. The pooled CI comes from the "
        "joint bootstrap: models share stimuli, so they are not independent studies."
    )
    if table.empty:
        st.caption("Replication needs model predictions.")
        return
    summaries = table[table["unit"] == "summary"]
    finding, dimension, metric = estimate_choice(
        "Finding", summaries, ("finding", "dimension", "metric"), key="pipelines-finding", estimates=table,
        format_func=lambda o: f"{o[0]} ({metric_label(o[1], o[2])})",
    )
    rows = table[(table["finding"] == finding) & (table["dimension"] == dimension) & (table["metric"] == metric)]
    if rows["estimate"].isna().all():
        st.caption("No estimate for this finding in this study's data (e.g. no valence or arousal ratings).")
    else:
        summary = rows.loc[rows["unit"] == "summary", "summary"].iloc[0]
        st.markdown(f"**{plain(summary)}**")
        chart = context.chart(("replication", finding, dimension, metric),
                              lambda: charts.replication_forest(table, finding, dimension, metric))
        show_chart(chart, f"replication_{finding}_{dimension}_{metric}", key="pipelines-forest")
    show_table(rows, "Replication of this finding", key="pipelines-replication-finding",
               lead=("unit", "pipeline", "model_id", "estimate", "replicated", "n"),
               caption="Per model, per pipeline, pooled and humans, with 95% bootstrap CIs.")
    show_table(table, "Replication: every finding", key="pipelines-replication",
               caption="Every finding of the replication table (summary rows: holds in k of n pipelines).")


def planning_section(context: AnalysisContext) -> None:
    planning = context.tables["rater_planning"]
    st.markdown(
        "How many raters? Spearman-Brown reliability of the mean of k raters from the single-rater "
        "ICC, with the number of raters needed for reliability 0.7, 0.8 and 0.9."
    )
    if planning.empty or planning["estimate"].isna().all():
        st.caption("Rater planning needs valence or arousal ratings from at least two raters.")
        return
    chart = context.chart(("planning",), lambda: charts.spearman_brown_chart(planning))
    show_chart(chart, "spearman_brown", key="pipelines-planning-chart")
    needed = planning[planning["quantity"] == "raters_needed"]
    show_table(needed, "Raters needed", key="pipelines-raters-needed",
               lead=("dimension", "form", "target", "estimate", "panel_size"),
               caption="Raters whose mean reaches the target reliability (CI from the ICC's exact CI).")
    show_table(planning, "Rater planning", key="pipelines-planning",
               caption="Spearman-Brown reliability of k raters (k = 1 to twice the panel) and raters needed.")


def retest_section(context: AnalysisContext) -> None:
    retest = context.tables["test_retest"]
    if retest.empty:
        st.caption("No repeated ratings in the analysed batches: test-retest reliability needs raters "
                   "who rated a stimulus twice.")
        return
    show_table(retest, "Test-retest", key="pipelines-retest",
               caption="Within-rater reliability: first against second rating (ICC(C,1); label agreement).")


def methods_section(context: AnalysisContext) -> None:
    st.markdown(
        "A methods paragraph with this study's numbers and each statistic's definition and "
        "citation, and the BibTeX file with every metric's and every model's paper (the same "
        "files `python -m core report` writes)."
    )
    text = methods_text(context.tables, context.frames.models, n_boot=context.settings.n_boot,
                        seed=context.settings.seed)
    files = (("methods.md", text.markdown, "text/markdown"), ("methods.tex", text.latex, "application/x-tex"),
             ("references.bib", text.bibtex, "application/x-bibtex"))
    for column, (name, content, mime) in zip(st.columns(len(files)), files):
        column.download_button(plain(name), content, file_name=name, mime=mime, key=f"pipelines-{name}",
                               on_click="ignore", icon=":material/download:")
    st.code(text.markdown, language="markdown", wrap_lines=True)


factory, study_id = page_setup("Across pipelines")
context = analysis_context(factory, study_id, key="pipelines", page_filters=page_filters)
if not context.has_models:
    no_models_message()
st.caption(
    f"{len(context.tables['models'])} model(s) in {context.tables['models']['pipeline'].nunique():d} pipeline(s). "
    f"CIs: {context.settings.n_boot:,} bootstrap resamples of stimuli (seed {context.settings.seed:d})."
)
workbook_download({name: context.tables[name] for name in TABLE_NAMES}, "across_pipelines_tables",
                  key="pipelines-all")
tabs = st.tabs(["Model differences", "Pipelines", "Replication", "Rater planning", "Test-retest", "Methods text"])
sections = (differences_section, pipelines_section, replication_section, planning_section, retest_section,
            methods_section)
for tab, section in zip(tabs, sections):
    with tab:
        section(context)
