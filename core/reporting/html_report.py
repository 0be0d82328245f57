"""One self-contained HTML file with every table and figure of the four analysis pages.

The file needs no server and no network: the Vega, Vega-Lite and vega-embed libraries come
inlined from vl-convert's offline bundle, each figure's Vega-Lite spec (data inlined) sits in a
JSON script block, and tables are plain HTML with every cell escaped (file names, attribute
values and model names are user text). Tables are rendered by looping over whatever
``build_report`` returns, so a new table appears without changes here.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache

import altair as alt
import pandas as pd
import vl_convert

from core.reporting import charts
from core.reporting.exports import _vegalite_version, chart_spec, with_estimate_text

DIGITS = 3
COLLAPSE_ROWS = 40  # longer tables start folded so the page stays readable
SECTIONS = ("Agreement", "Across pipelines", "Confusion", "Circumplex", "Model diversity", "Other tables")
TABLE_SECTIONS = {
    "ceiling": "Agreement", "loo": "Agreement", "fleiss": "Agreement", "alpha": "Agreement",
    "icc": "Agreement", "model_as_rater": "Agreement", "model_continuous": "Agreement",
    "model_labels": "Agreement", "panel_reliability": "Agreement", "subgroups": "Agreement",
    "subgroup_gaps": "Agreement", "models": "Agreement", "notes": "Agreement",
    "confusion": "Confusion", "recall": "Confusion", "human_vs_intended": "Confusion",
    "consensus": "Circumplex", "model_vs_model": "Model diversity",
    "model_differences": "Across pipelines", "pipelines": "Across pipelines",
    "replication": "Across pipelines", "rater_planning": "Agreement", "test_retest": "Agreement",
}
CEILING_COLUMNS = {"estimate": "human_median", "human_q25": "human_q25", "human_q75": "human_q75"}
METHODS: dict[str, str] = {
    "Human consensus": "Per stimulus: mean and SD of valence and arousal, the majority label with "
    "its vote share; ties follow the stated tie policy, never an index order.",
    "Fleiss' kappa": "Chance-corrected agreement of the raters' labels over all stimuli, with "
    "per-category kappas; unequal rater counts are handled by the stated policy.",
    "Krippendorff's alpha": "1 - observed / expected disagreement; nominal for labels, interval "
    "for valence and arousal; missing ratings allowed, units with one value are not pairable.",
    "ICC": "All six intraclass correlation forms (McGraw-Wong names with the Shrout-Fleiss "
    "equivalents), with F test and exact 95% CI; ICC(A,1) = ICC(2,1) is absolute agreement.",
    "Leave-one-rater-out and the human ceiling": "Each rater is scored against the mean "
    "(valence, arousal: CCC, r) or majority (labels: accuracy, kappa) of the other raters; the "
    "median of these scores is the human ceiling shown beside every model.",
    "Model vs humans": "Valence and arousal against the human mean: Lin's CCC (population "
    "moments), Pearson r, RMSE, MAE. Labels against the human majority and the intended emotion: "
    "accuracy, macro-F1, Cohen's kappa, per-emotion recall and row-normalised confusion.",
    "Model as one more rater": "The model scored like a rater against all human raters; its "
    "percentile among the raters' leave-one-out scores, and panel ICC/alpha with and without it.",
    "Model vs model": "Pairwise agreement matrices (CCC on valence and arousal, kappa on labels) "
    "showing whether models from different training pipelines err differently.",
    "Subgroups": "The metrics above per value of a stimulus attribute, with the gap between "
    "groups (a minus b); 'humans' rows give the panel's own reliability within each group.",
    "Confidence intervals": "95% percentile bootstrap over stimuli; one set of resamples serves "
    "every table (resamples and seed in the notes and the manifest).",
}
EXTERNAL_JS_GUARD = re.compile(r"</(script)", re.IGNORECASE)


@dataclass(frozen=True)
class Figure:
    """One report figure: a file-safe name, the page section it belongs to, the chart."""

    name: str
    section: str
    title: str
    chart: alt.TopLevelMixin


def report_figures(tables: Mapping[str, pd.DataFrame], predictions: pd.DataFrame | None = None) -> list[Figure]:
    """Every figure of the analysis pages, one per option a page lets the reader pick."""
    return list(iter_report_figures(tables, predictions))


def iter_report_figures(
    tables: Mapping[str, pd.DataFrame], predictions: pd.DataFrame | None = None
) -> Iterator[Figure]:
    """:func:`report_figures` one at a time, so each can be rendered while the next is built.

    A figure with nothing to draw is left out: no estimate at all (valence and arousal rows of a
    study rated by votes only) or no stimulus with both a valence and an arousal mean."""
    yield from _circumplex_figures(tables, predictions)
    yield from _confusion_figures(tables)
    yield from _matrix_figures(tables["model_vs_model"])
    yield from _forest_figures(tables)
    yield from _subgroup_figures(tables)
    yield from _replication_figures(tables.get("replication", pd.DataFrame()))


def _replication_figures(replication: pd.DataFrame) -> list[Figure]:
    """One forest plot per finding: models, pipelines, pooled and humans."""
    if replication.empty:
        return []
    findings = replication.loc[replication["estimate"].notna(), ["finding", "dimension", "metric"]]
    findings = findings.drop_duplicates()
    return [
        Figure(f"replication_{slug(finding)}_{dimension}_{metric}", "Across pipelines",
               f"Does it replicate? {finding} ({dimension}, {metric})",
               charts.replication_forest(replication, finding, dimension, metric))
        for finding, dimension, metric in findings.itertuples(index=False)
    ]


def _circumplex_figures(tables: Mapping[str, pd.DataFrame], predictions: pd.DataFrame | None) -> Iterator[Figure]:
    consensus = tables["consensus"]
    if consensus.empty or not consensus[["valence_mean", "arousal_mean"]].notna().all(axis=1).any():
        return
    yield Figure("circumplex_humans", "Circumplex", "Human consensus", charts.circumplex_chart(consensus))
    if predictions is not None:
        for model_id, rows in predictions.groupby("model_id", sort=True):
            title = f"Humans vs {model_id}"
            yield Figure(f"circumplex_{slug(model_id)}", "Circumplex", title,
                         charts.circumplex_chart(consensus, rows, title=title))


def _confusion_figures(tables: Mapping[str, pd.DataFrame]) -> list[Figure]:
    figures = []
    for (model_id, reference), cells in tables["confusion"].groupby(["model_id", "reference"], sort=True):
        title = f"{model_id} vs {reference.replace('_', ' ')}"
        true_title = "Intended emotion" if reference == "intended" else "Human majority"
        figures.append(Figure(f"confusion_{slug(model_id)}_{reference}", "Confusion", title,
                              charts.confusion_heatmap(cells, true_title=true_title, title=title)))
    recall = tables["recall"]
    if not recall.empty:
        for reference, rows in recall[recall["scope"] == "all"].groupby("reference"):
            title = f"Per-emotion recall vs {reference.replace('_', ' ')}"
            figures.append(Figure(f"recall_{reference}", "Confusion", title, charts.recall_bars(rows, title=title)))
    return figures


def _matrix_figures(matrix: pd.DataFrame) -> list[Figure]:
    if matrix.empty:
        return []
    pipelines = dict(zip(matrix["model_a"], matrix["pipeline_a"]))
    figures = []
    for (dimension, metric), rows in matrix.groupby(["dimension", "metric"]):
        if not _has_estimates(rows):
            continue
        title = f"Model vs model: {metric} on {dimension}"
        figures.append(Figure(f"model_vs_model_{dimension}", "Model diversity", title,
                              charts.model_heatmap(rows, pipelines=pipelines, metric=metric, title=title)))
    return figures


def _forest_figures(tables: Mapping[str, pd.DataFrame]) -> list[Figure]:
    """Human raters against the ceiling, then the models against it (Agreement page)."""
    ceiling, loo, as_rater = tables["ceiling"], tables["loo"], tables["model_as_rater"]
    figures = []
    for (dimension, metric), rows in loo.groupby(["dimension", "metric"], sort=False) if not loo.empty else ():
        if not _has_estimates(rows):
            continue
        figures.append(Figure(
            f"human_loo_{dimension}_{metric}", "Agreement", f"Human raters vs the others: {dimension} ({metric})",
            charts.forest_plot(rows, ceiling=charts.ceiling_band(ceiling, dimension, metric), label_col="rater",
                               metric=metric, title=f"Human raters vs the others: {dimension}"),
        ))
    for (dimension, metric), rows in as_rater.groupby(["dimension", "metric"], sort=False) if not as_rater.empty else ():
        humans = loo[(loo["dimension"] == dimension) & (loo["metric"] == metric)]
        if not _has_estimates(rows, humans):
            continue
        title = f"{dimension}: {metric} vs the human raters"
        figures.append(Figure(
            f"models_vs_humans_{dimension}_{metric}", "Agreement", title,
            charts.forest_plot(rows, ceiling=charts.ceiling_band(ceiling, dimension, metric),
                               human_scores=humans, metric=metric, title=title),
        ))
    return figures


def _subgroup_figures(tables: Mapping[str, pd.DataFrame]) -> list[Figure]:
    groups, gaps = tables["subgroups"], tables["subgroup_gaps"]
    if groups.empty:
        return []
    figures = []
    for (attribute, dimension, metric), rows in groups.groupby(["attribute", "dimension", "metric"], sort=True):
        pair_gaps = gaps[(gaps["attribute"] == attribute) & (gaps["dimension"] == dimension)
                         & (gaps["metric"] == metric)] if not gaps.empty else None
        if not _has_estimates(rows, pair_gaps):
            continue
        title = f"{dimension} {metric} by {attribute}"
        figures.append(Figure(
            f"subgroups_{slug(attribute)}_{dimension}_{metric}", "Agreement", title,
            charts.subgroup_gap_chart(rows, pair_gaps, metric=metric, title=title),
        ))
    return figures


def _has_estimates(*frames: pd.DataFrame | None) -> bool:
    return any(frame is not None and frame["estimate"].notna().any() for frame in frames)


def with_ceiling(table: pd.DataFrame, ceiling: pd.DataFrame) -> pd.DataFrame:
    """The human leave-one-rater-out median and IQR beside each model row of the same metric."""
    if table.empty or ceiling.empty or not {"dimension", "metric"} <= set(table.columns):
        return table
    beside = ceiling[["dimension", "metric", *CEILING_COLUMNS]].rename(columns=CEILING_COLUMNS)
    return table.merge(beside, on=["dimension", "metric"], how="left")


def tables_with_ceiling(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Model tables with the human ceiling beside each row (label rows: majority reference)."""
    shown = dict(tables)
    ceiling = tables.get("ceiling", pd.DataFrame())
    if "model_continuous" in tables:
        shown["model_continuous"] = with_ceiling(tables["model_continuous"], ceiling)
    labels = tables.get("model_labels", pd.DataFrame())
    if not labels.empty and "reference" in labels:
        majority = labels[labels["reference"] == "human_majority"].assign(dimension="emotion")
        others = labels[labels["reference"] != "human_majority"]
        shown["model_labels"] = pd.concat([with_ceiling(majority, ceiling), others], ignore_index=True)
    return shown


def render_html(
    tables: Mapping[str, pd.DataFrame],
    figures: Sequence[Figure],
    *,
    title: str,
    manifest: Mapping[str, object],
    descriptions: Mapping[str, str] | None = None,
) -> str:
    """The report as one HTML document (tables, figures, methods notes and the manifest)."""
    descriptions = descriptions or {}
    shown = tables_with_ceiling(tables)
    sections = []
    for section in SECTIONS:
        parts = [_figure_html(index, figure) for index, figure in enumerate(figures) if figure.section == section]
        parts += [
            _table_html(name, table, descriptions.get(name, ""))
            for name, table in shown.items() if TABLE_SECTIONS.get(name, "Other tables") == section
        ]
        if parts:
            sections.append(f'<section id="{slug(section).lower()}"><h2>{_e(section)}</h2>\n' + "\n".join(parts) + "</section>")
    return _PAGE.format(
        title=_e(title),
        generated=_e(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"),
        toc=" · ".join(f'<a href="#{slug(s).lower()}">{_e(s)}</a>' for s in (*SECTIONS, "Methods", "Manifest")),
        body="\n".join(sections),
        methods="\n".join(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in METHODS.items()),
        manifest=_e(json.dumps(manifest, indent=2, default=str)),
        vega=vega_bundle(),
    )


def _figure_html(index: int, figure: Figure) -> str:
    spec = chart_spec(figure.chart)
    return (
        f'<figure><div class="chart" id="chart-{index}" data-spec="spec-{index}"></div>'
        f"<figcaption>{_e(figure.title)}</figcaption></figure>\n"
        f'<script type="application/json" id="spec-{index}">{script_json(spec)}</script>'
    )


def _table_html(name: str, table: pd.DataFrame, description: str) -> str:
    heading = f"<h3>{_e(name)}</h3>" + (f'<p class="note">{_e(description)}</p>' if description else "")
    if table.empty or not len(table.columns):
        return heading + '<p class="note">No rows for this data.</p>'
    display = with_estimate_text(table, DIGITS)
    head = "".join(f"<th>{_e(column)}</th>" for column in display.columns)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{_e(_cell(value))}</td>" for value in row) + "</tr>"
        for row in display.itertuples(index=False, name=None)
    )
    body = f"<table><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>"
    if len(display) > COLLAPSE_ROWS:
        body = f"<details><summary>{len(display):,} rows (click to show)</summary>{body}</details>"
    return heading + body


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.{DIGITS}f}"
    return str(value)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def script_json(document: object) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can end or open a tag."""
    text = json.dumps(document, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def vega_bundle() -> str:
    """vega, vega-lite and vega-embed as one offline script (vl-convert ships them)."""
    source = vl_convert.javascript_bundle(vl_version=_vegalite_version())
    return EXTERNAL_JS_GUARD.sub(r"<\\/\1", source)


def slug(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "item"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.8rem; margin: 0.5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1rem 0 2rem; }}
figcaption, .note {{ color: #555; font-size: 0.85rem; }}
pre {{ background: #f7f7f7; padding: 1rem; overflow-x: auto; font-size: 0.8rem; }}
dt {{ font-weight: 600; margin-top: 0.5rem; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="note">Generated {generated} by FaceAgree. Self-contained: opens offline, no server needed.</p>
<nav>{toc}</nav>
{body}
<section id="methods"><h2>Methods</h2><dl>
{methods}
</dl></section>
<section id="manifest"><h2>Manifest</h2><pre>{manifest}</pre></section>
<script>{vega}</script>
<script>
document.querySelectorAll("div.chart").forEach(function (element) {{
  var spec = JSON.parse(document.getElementById(element.dataset.spec).textContent);
  vegaEmbed(element, spec, {{actions: false, renderer: "svg"}}).catch(function (error) {{
    element.textContent = "This figure could not be drawn: " + error;
    console.error(error);
  }});
}});
</script>
</body></html>
"""
