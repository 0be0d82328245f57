"""Altair chart builders for the analysis pages and the report command (no streamlit here).

Every builder takes tidy frames (the tables of :mod:`core.agreement.report`) and returns an Altair
chart; pages render them and :mod:`core.reporting.exports` writes them as SVG/PNG. Data is embedded
inline (``{"values": [...]}``) so charts have no row limit and ``chart.to_dict()`` is
self-contained. The builders only reshape for display (row shares of a confusion matrix,
axis labels); every statistic comes from the engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from core.ratings.labels import CANONICAL

VA_DOMAIN = [-1.0, 1.0]
CIRCLE_POINTS = 121
HUMAN_COLOR = "#4d4d4d"
CEILING_COLOR = "#9ecae1"
# One colour per canonical emotion, fixed so every chart and page agrees.
EMOTION_COLORS = dict(
    zip(
        CANONICAL,
        ["#7f7f7f", "#f2b701", "#3969ac", "#11a579", "#7f3c8d", "#80ba5a", "#e73f74", "#a5aa99"],
    )
)
EMOTION_SCALE = alt.Scale(domain=list(EMOTION_COLORS), range=list(EMOTION_COLORS.values()))
LABEL_LIMIT = 320  # px; model labels such as "A · enet_b0_8_va_mtl" must not be truncated
SLANTED = alt.Axis(labelAngle=-40, labelLimit=LABEL_LIMIT, labelOverlap=False)
NAMES = alt.Axis(labelLimit=LABEL_LIMIT)


def inline(frame: pd.DataFrame) -> dict[str, list[dict[str, object]]]:
    """Inline data as a plain Vega-Lite ``{"values": [...]}`` (NaN -> null).

    A plain dict skips Altair's per-record schema validation (seconds for 16,000 rows) and its
    5,000-row limit for DataFrames.
    """
    return {"values": json.loads(frame.to_json(orient="records", date_format="iso"))}


def finished(chart: alt.TopLevelMixin, **properties: object) -> alt.TopLevelMixin:
    """Top-level properties plus ``autosize: pad``: width and height are the plot area, axes and
    legends add to it (Streamlit otherwise fits the whole figure into the plot size)."""
    return chart.properties(autosize=alt.AutoSizeParams(type="pad"), **properties)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(frame.columns)}")


def _label_order(values: pd.Series) -> list[str]:
    """Canonical emotions first in their fixed order, anything else after, sorted."""
    present = [str(v) for v in pd.unique(values.dropna())]
    return [c for c in CANONICAL if c in present] + sorted(v for v in present if v not in CANONICAL)


def _tooltip_number(field: str, title: str | None = None) -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", title=title or field, format=".3f")


# --------------------------------------------------------------------------- confusion


def confusion_heatmap(
    confusion: pd.DataFrame,
    *,
    true_col: str = "true_label",
    pred_col: str = "predicted_label",
    count_col: str = "count",
    true_title: str = "Human majority",
    pred_title: str = "Model prediction",
    title: str = "",
) -> alt.LayerChart:
    """Row-normalised confusion matrix: colour is the share of the row, text is the count.

    ``confusion`` is long (one row per true x predicted cell with its count). Rows are true
    labels, so each row's shares sum to 1 and read as recall/error rates for that label.
    """
    _require(confusion, [true_col, pred_col, count_col], "confusion_heatmap")
    data = confusion[[true_col, pred_col, count_col]].rename(
        columns={true_col: "true", pred_col: "predicted", count_col: "count"}
    )
    totals = data.groupby("true")["count"].transform("sum")
    data = data.assign(share=np.where(totals > 0, data["count"] / totals.where(totals > 0, 1), 0.0))
    true_order = _label_order(data["true"])
    pred_order = _label_order(data["predicted"])
    base = alt.Chart(inline(data)).encode(
        x=alt.X("predicted:N", sort=pred_order, title=pred_title, axis=SLANTED),
        y=alt.Y("true:N", sort=true_order, title=true_title),
        tooltip=[
            alt.Tooltip("true:N", title=true_title),
            alt.Tooltip("predicted:N", title=pred_title),
            alt.Tooltip("count:Q", title="count"),
            alt.Tooltip("share:Q", title="row share", format=".1%"),
        ],
    )
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q", title="row share", scale=alt.Scale(domain=[0, 1], scheme="blues"))
    )
    counts = base.mark_text(fontSize=11).encode(
        text=alt.Text("count:Q"),
        color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black")),
    )
    return finished(cells + counts, title=title, width=320, height=320)


def recall_bars(
    recall: pd.DataFrame,
    *,
    label_col: str = "emotion",
    model_col: str | None = "model_id",
    title: str = "Per-emotion recall",
) -> alt.LayerChart:
    """Recall per emotion as bars with 95% CI whiskers; one bar per model when ``model_col``."""
    _require(recall, [label_col, "estimate", "ci_low", "ci_high"], "recall_bars")
    by_model = model_col is not None and model_col in recall.columns
    columns = [label_col, "estimate", "ci_low", "ci_high"] + (["n"] if "n" in recall else [])
    columns += [model_col] if by_model else []
    data = recall[columns].rename(columns={label_col: "emotion"})
    order = _label_order(data["emotion"])
    tooltip = [
        alt.Tooltip("emotion:N"),
        _tooltip_number("estimate", "recall"),
        _tooltip_number("ci_low", "CI low"),
        _tooltip_number("ci_high", "CI high"),
    ] + ([alt.Tooltip("n:Q")] if "n" in data else [])
    encoding: dict[str, object] = {
        "x": alt.X("emotion:N", sort=order, title=None, axis=SLANTED),
        "tooltip": tooltip,
    }
    if by_model:
        encoding["xOffset"] = alt.XOffset(f"{model_col}:N")
        encoding["color"] = alt.Color(f"{model_col}:N", title="model")
        tooltip.insert(0, alt.Tooltip(f"{model_col}:N", title="model"))
    else:
        encoding["color"] = alt.Color("emotion:N", scale=EMOTION_SCALE, legend=None)
    base = alt.Chart(inline(data)).encode(**encoding)
    bars = base.mark_bar().encode(y=alt.Y("estimate:Q", title="recall", scale=alt.Scale(domain=[0, 1])))
    whiskers = base.mark_rule(color="black").encode(y="ci_low:Q", y2="ci_high:Q")
    return finished(bars + whiskers, title=title, width=420, height=260)


# --------------------------------------------------------------------------- circumplex


def _unit_circle() -> pd.DataFrame:
    theta = np.linspace(0.0, 2.0 * np.pi, CIRCLE_POINTS)
    return pd.DataFrame({"valence": np.cos(theta), "arousal": np.sin(theta), "order": range(CIRCLE_POINTS)})


def _va_axes(x_field: str = "valence", y_field: str = "arousal") -> dict[str, alt.X | alt.Y]:
    return {
        "x": alt.X(f"{x_field}:Q", title="valence", scale=alt.Scale(domain=VA_DOMAIN, nice=False)),
        "y": alt.Y(f"{y_field}:Q", title="arousal", scale=alt.Scale(domain=VA_DOMAIN, nice=False)),
    }


def _circumplex_frame() -> alt.LayerChart:
    """The reference unit circle and the two zero axes."""
    circle = (
        alt.Chart(inline(_unit_circle()))
        .mark_line(color="#bbbbbb", strokeDash=[4, 3])
        .encode(order="order:Q", **_va_axes())
    )
    zero = pd.DataFrame({"valence": [0.0], "arousal": [0.0]})
    v_axis = alt.Chart(inline(zero)).mark_rule(color="#dddddd").encode(x="valence:Q")
    a_axis = alt.Chart(inline(zero)).mark_rule(color="#dddddd").encode(y="arousal:Q")
    return circle + v_axis + a_axis


def _human_layers(consensus: pd.DataFrame) -> alt.LayerChart:
    """Human mean per stimulus with +-1 SD rules on valence and arousal."""
    data = consensus.assign(
        v_low=consensus["valence_mean"] - consensus["valence_sd"].fillna(0),
        v_high=consensus["valence_mean"] + consensus["valence_sd"].fillna(0),
        a_low=consensus["arousal_mean"] - consensus["arousal_sd"].fillna(0),
        a_high=consensus["arousal_mean"] + consensus["arousal_sd"].fillna(0),
    )
    base = alt.Chart(inline(data))
    tooltip = [
        alt.Tooltip("stimulus:N"),
        alt.Tooltip("stimulus_id:Q", title="stimulus id"),
        alt.Tooltip("majority:N", title="human majority"),
        _tooltip_number("valence_mean", "valence mean"),
        _tooltip_number("valence_sd", "valence SD"),
        _tooltip_number("arousal_mean", "arousal mean"),
        _tooltip_number("arousal_sd", "arousal SD"),
    ]
    v_spread = base.mark_rule(opacity=0.35, clip=True).encode(
        x=alt.X("v_low:Q", scale=alt.Scale(domain=VA_DOMAIN, nice=False), title="valence"),
        x2="v_high:Q",
        y=alt.Y("arousal_mean:Q", scale=alt.Scale(domain=VA_DOMAIN, nice=False), title="arousal"),
        color=alt.Color("majority:N", scale=EMOTION_SCALE, title="human majority"),
    )
    a_spread = base.mark_rule(opacity=0.35, clip=True).encode(
        x="valence_mean:Q",
        y="a_low:Q",
        y2="a_high:Q",
        color=alt.Color("majority:N", scale=EMOTION_SCALE, title="human majority"),
    )
    means = base.mark_circle(size=45, opacity=0.9, clip=True).encode(
        color=alt.Color("majority:N", scale=EMOTION_SCALE, title="human majority"),
        tooltip=tooltip,
        **_va_axes("valence_mean", "arousal_mean"),
    )
    return v_spread + a_spread + means


def _centroid_layers(consensus: pd.DataFrame) -> alt.LayerChart:
    """Mean of the human means per majority emotion, drawn as a labelled diamond."""
    data = consensus.dropna(subset=["majority"])
    centroids = alt.Chart(inline(data)).transform_aggregate(
        valence="mean(valence_mean)", arousal="mean(arousal_mean)", n="count()", groupby=["majority"]
    )
    tooltip = [
        alt.Tooltip("majority:N", title="emotion centroid"),
        _tooltip_number("valence"),
        _tooltip_number("arousal"),
        alt.Tooltip("n:Q", title="stimuli"),
    ]
    marks = centroids.mark_point(shape="diamond", size=220, filled=True, stroke="black").encode(
        color=alt.Color("majority:N", scale=EMOTION_SCALE, title="human majority"),
        tooltip=tooltip,
        **_va_axes(),
    )
    labels = centroids.mark_text(dy=-14, fontWeight="bold").encode(text="majority:N", **_va_axes())
    return marks + labels


def _model_layers(joined: pd.DataFrame, model_ids: list[str]) -> alt.LayerChart:
    """Each model's point per stimulus, joined to the human mean by a line; dropdown by model."""
    base = alt.Chart(inline(joined))
    if len(model_ids) > 1:
        pick = alt.param(
            name="model",
            value=model_ids[0],
            bind=alt.binding_select(options=model_ids, name="Model "),
        )
        base = base.add_params(pick).transform_filter(alt.datum.model_id == pick)
    links = base.mark_rule(opacity=0.5, clip=True).encode(
        x=alt.X("valence_mean:Q", scale=alt.Scale(domain=VA_DOMAIN, nice=False)),
        y=alt.Y("arousal_mean:Q", scale=alt.Scale(domain=VA_DOMAIN, nice=False)),
        x2="valence:Q",
        y2="arousal:Q",
        color=alt.value("#444444"),
    )
    tooltip = [
        alt.Tooltip("model_id:N", title="model"),
        alt.Tooltip("stimulus:N"),
        alt.Tooltip("stimulus_id:Q", title="stimulus id"),
        alt.Tooltip("label:N", title="model label"),
        _tooltip_number("valence", "model valence"),
        _tooltip_number("arousal", "model arousal"),
        _tooltip_number("valence_mean", "human valence"),
        _tooltip_number("arousal_mean", "human arousal"),
    ]
    points = base.mark_point(shape="triangle-up", size=50, filled=True, clip=True).encode(
        color=alt.Color("label:N", scale=EMOTION_SCALE, title="label"),
        stroke=alt.value("black"),
        strokeWidth=alt.value(0.5),
        tooltip=tooltip,
        **_va_axes(),
    )
    return links + points


def ceiling_band(ceiling: pd.DataFrame, dimension: str, metric: str) -> dict | None:
    """The human band of a forest plot: median and IQR of the raters' leave-one-rater-out scores
    (one row of the ``ceiling`` table), or None when the table has no such row."""
    rows = ceiling[(ceiling["dimension"] == dimension) & (ceiling["metric"] == metric)]
    if rows.empty:
        return None
    row = rows.iloc[0]
    return {"estimate": row["estimate"], "ci_low": row["human_q25"], "ci_high": row["human_q75"],
            "label": "human raters: median and IQR (leave-one-rater-out)"}


def circumplex_chart(
    consensus: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    *,
    centroids: bool = True,
    majority_col: str = "majority_label",
    title: str = "Valence-arousal circumplex",
    size: int = 480,
) -> alt.LayerChart:
    """Valence-arousal plane, axes fixed to [-1, 1] with the unit reference circle.

    ``consensus``: one row per stimulus with ``stimulus``, ``stimulus_id``, ``valence_mean``,
    ``valence_sd``, ``arousal_mean``, ``arousal_sd`` and ``majority_col`` (human majority label;
    the ``consensus`` table of :func:`core.agreement.report.build_report`).
    ``predictions``: optional rows (``stimulus_id``, ``model_id``, ``label``, ``valence``,
    ``arousal``); each model point is joined to its stimulus' human mean. With several models a
    dropdown in the chart picks one (the first is shown in static exports).
    Human means are circles with +-1 SD rules; models are triangles; diamonds are the mean
    position of the stimuli of each human-majority emotion.
    """
    columns = ["stimulus", "stimulus_id", "valence_mean", "valence_sd", "arousal_mean", "arousal_sd"]
    _require(consensus, columns + [majority_col], "circumplex_chart")
    humans = (
        consensus[columns + [majority_col]]
        .rename(columns={majority_col: "majority"})
        .dropna(subset=["valence_mean", "arousal_mean"])
    )
    chart = _circumplex_frame() + _human_layers(humans)
    if centroids and not humans.empty:
        chart = chart + _centroid_layers(humans)
    if predictions is not None and not predictions.empty:
        _require(predictions, ["stimulus_id", "model_id", "label", "valence", "arousal"], "circumplex_chart")
        joined = predictions[["stimulus_id", "model_id", "label", "valence", "arousal"]].merge(
            humans[["stimulus_id", "stimulus", "valence_mean", "arousal_mean"]], on="stimulus_id"
        ).dropna(subset=["valence", "arousal"])
        if not joined.empty:
            model_ids = sorted(joined["model_id"].astype(str).unique())
            chart = chart + _model_layers(joined, model_ids)
    return finished(chart, title=title, width=size, height=size)


# --------------------------------------------------------------------------- model x model


def model_label(model_id: str, pipeline: str | None) -> str:
    """``A · enet_b0_8_va_mtl``: the pipeline in front, so families group on an axis."""
    if pipeline is None or (isinstance(pipeline, float) and np.isnan(pipeline)) or str(pipeline) == "":
        return str(model_id)
    return f"{pipeline} · {model_id}"


def model_heatmap(
    matrix: pd.DataFrame,
    *,
    pipelines: Mapping[str, str] | None = None,
    row_col: str = "model_a",
    col_col: str = "model_b",
    value_col: str = "estimate",
    metric: str = "agreement",
    domain: Sequence[float] = (-1.0, 1.0),
    title: str = "",
) -> alt.LayerChart:
    """Model x model agreement heatmap with the value in each cell, models grouped by pipeline.

    Axis labels read ``<pipeline> · <model id>`` and are sorted by pipeline, so blocks along
    the diagonal are within-pipeline pairs; a model pair from different pipelines that agrees
    less shows that the pipelines err differently.
    """
    _require(matrix, [row_col, col_col, value_col], "model_heatmap")
    pipelines = dict(pipelines or {})
    keep = [row_col, col_col, value_col] + [c for c in ("ci_low", "ci_high", "n") if c in matrix]
    data = matrix[keep].rename(columns={row_col: "model_a", col_col: "model_b", value_col: "value"})
    for side in ("a", "b"):
        data[f"label_{side}"] = [model_label(m, pipelines.get(m)) for m in data[f"model_{side}"]]
        data[f"pipeline_{side}"] = [str(pipelines.get(m, "")) for m in data[f"model_{side}"]]
    models = sorted(set(data["model_a"]) | set(data["model_b"]), key=lambda m: (str(pipelines.get(m, "")), str(m)))
    order = [model_label(m, pipelines.get(m)) for m in models]
    tooltip = [
        alt.Tooltip("model_a:N", title="model"),
        alt.Tooltip("pipeline_a:N", title="pipeline"),
        alt.Tooltip("model_b:N", title="other model"),
        alt.Tooltip("pipeline_b:N", title="other pipeline"),
        _tooltip_number("value", metric),
    ] + [_tooltip_number(c, c.replace("_", " ")) for c in ("ci_low", "ci_high") if c in data]
    tooltip += [alt.Tooltip("n:Q")] if "n" in data else []
    base = alt.Chart(inline(data)).encode(
        x=alt.X("label_b:N", sort=order, title=None, axis=SLANTED),
        y=alt.Y("label_a:N", sort=order, title=None, axis=NAMES),
        tooltip=tooltip,
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "value:Q", title=metric, scale=alt.Scale(domain=list(domain), scheme="redblue", domainMid=0)
        )
    )
    text = base.mark_text(fontSize=11).transform_calculate(  # Vega would print "null"
        cell_text="isValid(datum.value) && isFinite(datum.value) ? format(datum.value, '.2f') : 'n/a'"
    ).encode(
        text=alt.Text("cell_text:N"),
        color=alt.condition("abs(datum.value) > 0.7", alt.value("white"), alt.value("black")),
    )
    size = max(160, 56 * len(order))
    return finished(cells + text, title=title or metric, width=size, height=size)


# --------------------------------------------------------------------------- agreement


def forest_plot(
    estimates: pd.DataFrame,
    *,
    ceiling: Mapping[str, float] | None = None,
    human_scores: pd.DataFrame | None = None,
    label_col: str = "model_id",
    metric: str = "agreement",
    title: str = "",
) -> alt.LayerChart:
    """Estimate with 95% CI per model against the human ceiling.

    ``ceiling`` (``estimate``, ``ci_low``, ``ci_high``) is drawn as a shaded band with a rule at
    its estimate; ``human_scores`` (one ``estimate`` per human rater, e.g. leave-one-rater-out)
    as thin grey rules, so a model reads directly as inside or outside the human range.
    """
    _require(estimates, [label_col, "estimate", "ci_low", "ci_high"], "forest_plot")
    keep = [label_col, "estimate", "ci_low", "ci_high"] + (["n"] if "n" in estimates else [])
    data = estimates[keep].rename(columns={label_col: "label"})
    order = list(dict.fromkeys(data["label"].astype(str)))
    x_scale = alt.Scale(zero=False)
    y = alt.Y("label:N", sort=order, title=None, axis=NAMES)
    tooltip = [
        alt.Tooltip("label:N", title="model"),
        _tooltip_number("estimate", metric),
        _tooltip_number("ci_low", "CI low"),
        _tooltip_number("ci_high", "CI high"),
    ] + ([alt.Tooltip("n:Q")] if "n" in data else [])
    layers: list[alt.Chart] = []
    band_label = ceiling.get("label", "human ceiling") if ceiling is not None else ""
    legend = _forest_legend(band_label, human_scores is not None and not human_scores.empty)
    if ceiling is not None:
        band = pd.DataFrame([{k: ceiling.get(k) for k in ("estimate", "ci_low", "ci_high")}])
        band["what"] = band_label
        ceiling_base = alt.Chart(inline(band))
        band_tooltip = [
            alt.Tooltip("what:N", title=""),
            _tooltip_number("estimate"),
            _tooltip_number("ci_low", "low"),
            _tooltip_number("ci_high", "high"),
        ]
        layers.append(
            ceiling_base.mark_rect(opacity=0.45).encode(
                x=alt.X("ci_low:Q", scale=x_scale), x2="ci_high:Q", tooltip=band_tooltip, color=legend
            )
        )
        median = band.assign(what=MEDIAN_LABEL)
        layers.append(
            alt.Chart(inline(median)).mark_rule(strokeDash=[5, 3], size=2).encode(
                x="estimate:Q", tooltip=band_tooltip, color=legend
            )
        )
    if human_scores is not None and not human_scores.empty:
        _require(human_scores, ["estimate"], "forest_plot human_scores")
        columns = ["estimate"] + (["rater"] if "rater" in human_scores else [])
        layers.append(
            alt.Chart(inline(human_scores[columns].assign(what=RATERS_LABEL)))
            .mark_rule(opacity=0.35, strokeWidth=1)
            .encode(
                x=alt.X("estimate:Q", scale=x_scale), color=legend,
                tooltip=[alt.Tooltip("rater:N"), _tooltip_number("estimate")] if "rater" in columns else [],
            )
        )
    base = alt.Chart(inline(data)).encode(y=y, tooltip=tooltip)
    layers.append(base.mark_rule(color="black").encode(x=alt.X("ci_low:Q", scale=x_scale, title=metric), x2="ci_high:Q"))
    layers.append(base.mark_point(filled=True, size=70, color="black").encode(x="estimate:Q"))
    height = max(90, 30 * len(order))
    return finished(alt.layer(*layers), title=title or metric, width=420, height=height)


MEDIAN_LABEL = "median of the human raters"
RATERS_LABEL = "each human rater (vs the others)"


def _forest_legend(band_label: str, with_raters: bool) -> alt.Color:
    """One legend for the human reference lines of a forest plot (band, median, each rater)."""
    entries = ([(band_label, CEILING_COLOR), (MEDIAN_LABEL, "#3182bd")] if band_label else [])
    entries += [(RATERS_LABEL, HUMAN_COLOR)] if with_raters else []
    return alt.Color(
        "what:N", title=None,
        scale=alt.Scale(domain=[e[0] for e in entries], range=[e[1] for e in entries]),
        legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0),
    )


def subgroup_gap_chart(
    groups: pd.DataFrame,
    gaps: pd.DataFrame | None = None,
    *,
    group_col: str = "group",
    label_col: str = "model_id",
    metric: str = "agreement",
    title: str = "",
) -> alt.HConcatChart | alt.LayerChart:
    """Per-group estimates with CIs (left) and the gap between groups with its CI (right).

    ``groups``: one row per model x group (``estimate``, ``ci_low``, ``ci_high``, ``n``).
    ``gaps``: one row per model and pair of groups (``estimate``, ``ci_low``, ``ci_high``, and
    ``group_a``/``group_b`` naming the pair, read as a minus b); the zero rule marks no gap, so
    a CI that does not cross it shows a group difference.
    """
    _require(groups, [label_col, group_col, "estimate", "ci_low", "ci_high"], "subgroup_gap_chart")
    keep = [label_col, group_col, "estimate", "ci_low", "ci_high"] + (["n"] if "n" in groups else [])
    data = groups[keep].rename(columns={label_col: "label", group_col: "group"})
    data["group"] = data["group"].astype(str)
    order = list(dict.fromkeys(data["label"].astype(str)))
    height = max(60, 30 * len(order))
    tooltip = [
        alt.Tooltip("label:N", title="model"),
        alt.Tooltip("group:N"),
        _tooltip_number("estimate", metric),
        _tooltip_number("ci_low", "CI low"),
        _tooltip_number("ci_high", "CI high"),
    ] + ([alt.Tooltip("n:Q")] if "n" in data else [])
    base = alt.Chart(inline(data)).encode(
        y=alt.Y("label:N", sort=order, title=None, axis=NAMES),
        yOffset=alt.YOffset("group:N"),
        # Legend below the panels: on the right it widened the figure past the page and was cut.
        color=alt.Color("group:N", title=group_col, legend=alt.Legend(orient="bottom", columns=4, labelLimit=0)),
        tooltip=tooltip,
    )
    per_group = (
        base.mark_rule().encode(x=alt.X("ci_low:Q", title=metric, scale=alt.Scale(zero=False)), x2="ci_high:Q")
        + base.mark_point(filled=True, size=60).encode(x="estimate:Q")
    ).properties(title=title or f"{metric} by {group_col}", width=360, height=height)
    if gaps is None or gaps.empty:
        return finished(per_group)
    _require(gaps, [label_col, "estimate", "ci_low", "ci_high"], "subgroup_gap_chart gaps")
    gap_data = gaps[[label_col, "estimate", "ci_low", "ci_high"]].rename(columns={label_col: "label"})
    if {"group_a", "group_b"} <= set(gaps.columns):
        gap_data["comparison"] = gaps["group_a"].astype(str) + " − " + gaps["group_b"].astype(str)
    else:
        gap_data["comparison"] = "gap"
    gap_base = alt.Chart(inline(gap_data)).encode(
        y=alt.Y("label:N", sort=order, title=None, axis=NAMES),
        yOffset=alt.YOffset("comparison:N"),
        tooltip=[
            alt.Tooltip("label:N", title="model"),
            alt.Tooltip("comparison:N"),
            _tooltip_number("estimate", "gap"),
            _tooltip_number("ci_low", "CI low"),
            _tooltip_number("ci_high", "CI high"),
        ],
    )
    zero = alt.Chart(inline(pd.DataFrame({"x": [0.0]}))).mark_rule(color="#999999", strokeDash=[4, 3]).encode(x="x:Q")
    gap_panel = (
        zero
        + gap_base.mark_rule(color="black").encode(x=alt.X("ci_low:Q", title=f"gap in {metric}"), x2="ci_high:Q")
        + gap_base.mark_point(filled=True, size=60, color="black").encode(x="estimate:Q")
    ).properties(title=_gap_title(gap_data["comparison"]), width=240, height=height)
    return finished(alt.hconcat(per_group, gap_panel))


def _gap_title(comparisons: pd.Series) -> str:
    """Which way round the gap is read: ``gap: female − male`` when there is one pair."""
    pairs = comparisons.unique()
    if len(pairs) == 1 and pairs[0] != "gap":
        return f"gap: {pairs[0]}"
    return "gap between groups (first minus second; hover for the pair)"



def replication_forest(replication: pd.DataFrame, finding: str, dimension: str, metric: str
                       ) -> alt.LayerChart:
    """Forest plot of one finding of the ``replication`` table: each pipeline, the pooled
    estimate and (subgroup gaps) the humans, with 95% CIs and a rule at zero; the title says in
    how many pipelines it holds."""
    _require(replication, ["finding", "dimension", "metric", "unit", "pipeline", "estimate",
                           "ci_low", "ci_high"], "replication_forest")
    rows = replication[(replication["finding"] == finding) & (replication["dimension"] == dimension)
                       & (replication["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no replication rows for {finding!r}, {dimension}, {metric}")
    shown = rows[rows["unit"].isin(["pipeline", "pooled", "humans"])].copy()
    names = {"pooled": "pooled (all pipelines)", "humans": "humans (ceiling)"}
    shown["label"] = shown["pipeline"].astype(str).where(shown["unit"] == "pipeline",
                                                         shown["unit"].map(names))
    shown["kind"] = shown["unit"]
    data = shown[["label", "kind", "estimate", "ci_low", "ci_high", "n"]]
    order = list(dict.fromkeys(data["label"]))
    base = alt.Chart(inline(data)).encode(
        y=alt.Y("label:N", sort=order, title=None, axis=NAMES),
        color=alt.Color("kind:N", title=None, scale=alt.Scale(
            domain=["pipeline", "pooled", "humans"], range=["black", "#3182bd", HUMAN_COLOR])),
        tooltip=[alt.Tooltip("label:N", title=""), _tooltip_number("estimate", metric),
                 _tooltip_number("ci_low", "CI low"), _tooltip_number("ci_high", "CI high"),
                 alt.Tooltip("n:Q")],
    )
    zero = alt.Chart(inline(pd.DataFrame({"x": [0.0]}))).mark_rule(
        color="#999999", strokeDash=[4, 3]).encode(x="x:Q")
    summary = rows.loc[rows["unit"] == "summary", "summary"]
    title = f"{finding} ({dimension} {metric})" + (f": {summary.iloc[0]}" if len(summary) else "")
    return finished(
        alt.layer(zero,
                  base.mark_rule().encode(x=alt.X("ci_low:Q", title=f"{dimension} {metric}"),
                                          x2="ci_high:Q"),
                  base.mark_point(filled=True, size=70).encode(x="estimate:Q")),
        title=title, width=420, height=max(90, 30 * len(order)))


RELIABILITY_TARGETS = (0.7, 0.8, 0.9)


def spearman_brown_chart(planning: pd.DataFrame, targets: Sequence[float] = RELIABILITY_TARGETS,
                         title: str = "Reliability of the mean of k raters") -> alt.LayerChart:
    """Spearman-Brown reliability vs k (``rater_planning`` rows ``reliability_of_mean``), one line
    per dimension and ICC form with its CI band, dashed rules at the ``targets``."""
    _require(planning, ["dimension", "form", "quantity", "k", "estimate", "ci_low", "ci_high", "panel_size"],
             "spearman_brown_chart")
    rows = planning[planning["quantity"] == "reliability_of_mean"].copy()
    if rows.empty:
        raise ValueError("no reliability_of_mean rows in the rater planning table")
    rows["series"] = rows["dimension"].astype(str) + " · " + rows["form"].astype(str)
    data = rows[["series", "k", "estimate", "ci_low", "ci_high", "panel_size"]]
    base = alt.Chart(inline(data)).encode(
        x=alt.X("k:Q", title="raters averaged (k)", axis=alt.Axis(tickMinStep=1)),
        color=alt.Color("series:N", title=None),
    )
    band = base.mark_area(opacity=0.15).encode(y="ci_low:Q", y2="ci_high:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("estimate:Q", title="reliability of the mean", scale=alt.Scale(domain=[0, 1])),
        tooltip=[alt.Tooltip("series:N", title=""), alt.Tooltip("k:Q"), _tooltip_number("estimate", "reliability"),
                 _tooltip_number("ci_low", "CI low"), _tooltip_number("ci_high", "CI high")],
    )
    rules = alt.Chart(inline(pd.DataFrame({"target": list(targets)}))).mark_rule(
        color="#999999", strokeDash=[4, 3]).encode(y="target:Q", tooltip=[alt.Tooltip("target:Q")])
    panel = alt.Chart(inline(pd.DataFrame({"k": [int(rows["panel_size"].max())]}))).mark_rule(
        color=HUMAN_COLOR).encode(x="k:Q", tooltip=[alt.Tooltip("k:Q", title="panel size")])
    return finished(alt.layer(band, line, rules, panel), title=title, width=480, height=280)
