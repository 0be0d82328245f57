"""Chart builders: encodings, embedded data values and domains read from ``chart.to_dict()``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.access import Role
from core.reporting import charts
from core.reporting.exports import chart_to_svg


def _layers(spec: dict, datasets: dict | None = None, inherited: dict | None = None) -> list[dict]:
    """Every leaf view of a (possibly nested) layer/concat spec, with its data values inlined.

    Altair moves inline data to top-level ``datasets`` and shared data up to the parent layer;
    each leaf gets its ``data.values`` back.
    """
    datasets = spec.get("datasets", {}) if datasets is None else datasets
    data = spec.get("data", inherited or {})
    children = spec.get("layer") or spec.get("hconcat")
    if children:
        return [leaf for child in children for leaf in _layers(child, datasets, data)]
    if "name" in data:
        data = {"values": datasets[data["name"]]}
    return [{**spec, "data": data}]


def _mark(layer: dict) -> str:
    mark = layer["mark"]
    return mark if isinstance(mark, str) else mark["type"]


def _values(layer: dict) -> list[dict]:
    return layer["data"]["values"]


def test_confusion_rows_are_normalised_and_counts_are_text() -> None:
    confusion = pd.DataFrame(
        {
            "true_label": ["anger", "anger", "happiness", "happiness", "contempt"],
            "predicted_label": ["anger", "happiness", "happiness", "anger", "anger"],
            "count": [3, 1, 0, 0, 2],
        }
    )
    spec = charts.confusion_heatmap(confusion).to_dict()
    rect, text = _layers(spec)
    assert _mark(rect) == "rect" and _mark(text) == "text"
    cells = {(v["true"], v["predicted"]): v for v in _values(rect)}
    assert cells[("anger", "anger")]["share"] == pytest.approx(0.75)
    assert cells[("anger", "happiness")]["share"] == pytest.approx(0.25)
    assert cells[("contempt", "anger")]["share"] == pytest.approx(1.0)
    assert cells[("happiness", "happiness")]["share"] == 0.0  # empty row: no division by zero
    assert rect["encoding"]["color"]["field"] == "share"
    assert rect["encoding"]["color"]["scale"]["domain"] == [0, 1]
    assert text["encoding"]["text"]["field"] == "count"
    # canonical order on both axes, not alphabetical
    assert rect["encoding"]["y"]["sort"] == ["happiness", "anger", "contempt"]
    assert rect["encoding"]["x"]["sort"] == ["happiness", "anger"]


def test_confusion_accepts_other_column_names() -> None:
    frame = pd.DataFrame({"reference": ["fear"], "model": ["fear"], "n": [4]})
    spec = charts.confusion_heatmap(frame, true_col="reference", pred_col="model", count_col="n").to_dict()
    assert _values(_layers(spec)[0]) == [{"true": "fear", "predicted": "fear", "count": 4, "share": 1.0}]


def test_missing_columns_raise_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"confusion_heatmap needs columns \['count'\]"):
        charts.confusion_heatmap(pd.DataFrame({"true_label": ["a"], "predicted_label": ["a"]}))


def test_recall_bars_by_model_have_ci_whiskers() -> None:
    recall = pd.DataFrame(
        {
            "emotion": ["sadness", "happiness", "sadness", "happiness"],
            "model_id": ["m1", "m1", "m2", "m2"],
            "estimate": [0.4, 0.9, 0.5, 0.8],
            "ci_low": [0.3, 0.8, np.nan, 0.7],
            "ci_high": [0.5, 1.0, np.nan, 0.9],
            "n": [10, 20, 10, 20],
        }
    )
    bars, whiskers = _layers(charts.recall_bars(recall).to_dict())
    assert _mark(bars) == "bar" and _mark(whiskers) == "rule"
    assert bars["encoding"]["y"]["scale"]["domain"] == [0, 1]
    assert bars["encoding"]["xOffset"]["field"] == "model_id"
    assert bars["encoding"]["x"]["sort"] == ["happiness", "sadness"]
    assert (whiskers["encoding"]["y"]["field"], whiskers["encoding"]["y2"]["field"]) == ("ci_low", "ci_high")
    assert _values(bars)[2]["ci_low"] is None  # NaN travels as JSON null


def test_recall_bars_single_model_colours_by_emotion() -> None:
    recall = pd.DataFrame({"emotion": ["fear"], "estimate": [0.5], "ci_low": [0.2], "ci_high": [0.8]})
    bars, _ = _layers(charts.recall_bars(recall, model_col=None).to_dict())
    assert bars["encoding"]["color"]["field"] == "emotion"
    assert "xOffset" not in bars["encoding"]


@pytest.fixture
def consensus() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stimulus": ["a.png", "b.png", "c.png", "d.png"],
            "stimulus_id": [1, 2, 3, 4],
            "valence_mean": [0.6, 0.4, -0.5, np.nan],
            "valence_sd": [0.1, 0.2, 0.3, np.nan],
            "arousal_mean": [0.2, 0.4, 0.6, np.nan],
            "arousal_sd": [0.05, np.nan, 0.1, np.nan],
            "majority_label": ["happiness", "happiness", "anger", None],
        }
    )


@pytest.fixture
def predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stimulus_id": [1, 2, 3, 1, 3],
            "model_id": ["m2", "m2", "m2", "m1", "m1"],
            "label": ["happiness", "neutral", "anger", "happiness", "fear"],
            "valence": [0.7, 0.0, -0.4, 0.5, np.nan],
            "arousal": [0.1, 0.0, 0.5, 0.3, np.nan],
        }
    )


def test_circumplex_axes_fixed_and_reference_circle(consensus: pd.DataFrame) -> None:
    spec = charts.circumplex_chart(consensus).to_dict()
    layers = _layers(spec)
    circle = layers[0]
    assert _mark(circle) == "line"
    radii = [np.hypot(v["valence"], v["arousal"]) for v in _values(circle)]
    assert np.allclose(radii, 1.0)
    for layer in layers:
        for channel in ("x", "y"):
            scale = layer["encoding"].get(channel, {}).get("scale")
            if scale is not None:
                assert scale["domain"] == [-1.0, 1.0]
    assert spec["width"] == spec["height"]


def test_circumplex_humans_spread_and_tooltips(consensus: pd.DataFrame) -> None:
    layers = _layers(charts.circumplex_chart(consensus).to_dict())
    means = next(l for l in layers if _mark(l) == "circle")
    assert [v["stimulus_id"] for v in _values(means)] == [1, 2, 3]  # stimulus without V/A dropped
    tooltip_fields = {t["field"] for t in means["encoding"]["tooltip"]}
    assert {"stimulus", "stimulus_id", "valence_mean", "arousal_mean", "valence_sd", "arousal_sd"} <= tooltip_fields
    spreads = [l for l in layers if _mark(l) == "rule" and "x2" in l["encoding"] and l["encoding"]["x2"]["field"] == "v_high"]
    assert len(spreads) == 1
    first = _values(spreads[0])[0]
    assert (first["v_low"], first["v_high"]) == pytest.approx((0.5, 0.7))
    second = _values(spreads[0])[1]
    assert (second["a_low"], second["a_high"]) == pytest.approx((0.4, 0.4))  # missing SD: no spread


def test_circumplex_centroids_per_majority_emotion(consensus: pd.DataFrame) -> None:
    layers = _layers(charts.circumplex_chart(consensus).to_dict())
    diamond = next(l for l in layers if _mark(l) == "point" and l["mark"].get("shape") == "diamond")
    (aggregate,) = [t for t in diamond["transform"] if "aggregate" in t]
    assert aggregate["groupby"] == ["majority"]
    ops = {a["as"]: (a["op"], a.get("field")) for a in aggregate["aggregate"]}
    assert ops["valence"] == ("mean", "valence_mean") and ops["arousal"] == ("mean", "arousal_mean")
    assert {v["majority"] for v in _values(diamond)} == {"happiness", "anger"}
    no_centroids = _layers(charts.circumplex_chart(consensus, centroids=False).to_dict())
    assert not any(l["mark"].get("shape") == "diamond" for l in no_centroids if isinstance(l["mark"], dict))


def test_circumplex_models_joined_to_human_mean_with_model_picker(
    consensus: pd.DataFrame, predictions: pd.DataFrame
) -> None:
    spec = charts.circumplex_chart(consensus, predictions).to_dict()
    layers = _layers(spec)
    link = next(l for l in layers if _mark(l) == "rule" and l["encoding"].get("x2", {}).get("field") == "valence")
    assert (link["encoding"]["x"]["field"], link["encoding"]["y"]["field"]) == ("valence_mean", "arousal_mean")
    assert link["encoding"]["y2"]["field"] == "arousal"
    rows = {(v["model_id"], v["stimulus_id"]): v for v in _values(link)}
    assert set(rows) == {("m2", 1), ("m2", 2), ("m2", 3), ("m1", 1)}  # NaN prediction dropped
    assert rows[("m2", 3)]["valence_mean"] == -0.5 and rows[("m2", 3)]["valence"] == -0.4
    params = [p for p in spec.get("params", []) if p["name"] == "model"]
    assert params and params[0]["value"] == "m1"
    assert params[0]["bind"]["options"] == ["m1", "m2"]
    points = next(l for l in layers if _mark(l) == "point" and l["mark"].get("shape") == "triangle-up")
    assert {"stimulus_id", "model_id", "valence", "arousal"} <= {t["field"] for t in points["encoding"]["tooltip"]}


def test_circumplex_single_model_has_no_picker(consensus: pd.DataFrame, predictions: pd.DataFrame) -> None:
    spec = charts.circumplex_chart(consensus, predictions[predictions.model_id == "m2"]).to_dict()
    assert not [p for p in spec.get("params", []) if p["name"] == "model"]


def test_model_heatmap_labels_pipelines_and_orders_by_pipeline() -> None:
    models = ["esr9", "enet_b0_8_va_mtl", "mbf_va_mtl"]
    matrix = pd.DataFrame(
        [(a, b, 1.0 if a == b else 0.3) for a in models for b in models], columns=["model_a", "model_b", "estimate"]
    )
    pipelines = {"enet_b0_8_va_mtl": "A", "mbf_va_mtl": "A", "esr9": "E"}
    rect, text = _layers(charts.model_heatmap(matrix, pipelines=pipelines, metric="CCC valence").to_dict())
    assert rect["encoding"]["x"]["sort"] == ["A · enet_b0_8_va_mtl", "A · mbf_va_mtl", "E · esr9"]
    assert rect["encoding"]["color"]["scale"]["domain"] == [-1.0, 1.0]
    assert rect["encoding"]["color"]["title"] == "CCC valence"
    assert text["encoding"]["text"]["field"] == "cell_text"  # "n/a" where the value is undefined
    cell = next(v for v in _values(rect) if v["model_a"] == "esr9" and v["model_b"] == "mbf_va_mtl")
    assert (cell["pipeline_a"], cell["pipeline_b"], cell["value"]) == ("E", "A", 0.3)


def test_model_label_without_pipeline() -> None:
    assert charts.model_label("x", None) == "x" and charts.model_label("x", "B") == "B · x"


def test_forest_plot_with_ceiling_band_and_human_ticks() -> None:
    estimates = pd.DataFrame(
        {"model_id": ["m1", "m2"], "estimate": [0.5, 0.7], "ci_low": [0.4, 0.6], "ci_high": [0.6, 0.8], "n": [30, 30]}
    )
    ceiling = {"estimate": 0.65, "ci_low": 0.55, "ci_high": 0.75, "label": "human LORO"}
    humans = pd.DataFrame({"rater": ["r1", "r2", "r3"], "estimate": [0.6, 0.65, 0.7]})
    layers = _layers(charts.forest_plot(estimates, ceiling=ceiling, human_scores=humans, metric="CCC").to_dict())
    band, rule, ticks, whiskers, points = layers
    assert _mark(band) == "rect" and _values(band)[0]["ci_low"] == 0.55 and _values(band)[0]["what"] == "human LORO"
    assert _mark(rule) == "rule" and rule["encoding"]["x"]["field"] == "estimate"
    assert _mark(ticks) == "rule" and [v["estimate"] for v in _values(ticks)] == [0.6, 0.65, 0.7]
    assert "y" not in ticks["encoding"]  # spans every row
    assert whiskers["encoding"]["x2"]["field"] == "ci_high"
    assert [v["label"] for v in _values(points)] == ["m1", "m2"]
    assert points["encoding"]["y"]["sort"] == ["m1", "m2"]


def test_forest_plot_without_ceiling_has_only_models() -> None:
    estimates = pd.DataFrame({"model_id": ["m1"], "estimate": [0.5], "ci_low": [0.4], "ci_high": [0.6]})
    assert [_mark(l) for l in _layers(charts.forest_plot(estimates).to_dict())] == ["rule", "point"]


def test_subgroup_gap_chart_two_panels() -> None:
    groups = pd.DataFrame(
        {
            "model_id": ["m1", "m1"],
            "group": ["female", "male"],
            "estimate": [0.5, 0.7],
            "ci_low": [0.4, 0.6],
            "ci_high": [0.6, 0.8],
            "n": [12, 14],
        }
    )
    gaps = pd.DataFrame(
        {"model_id": ["m1"], "group_a": ["female"], "group_b": ["male"], "estimate": [-0.2], "ci_low": [-0.35], "ci_high": [-0.05]}
    )
    spec = charts.subgroup_gap_chart(groups, gaps, group_col="group", metric="CCC").to_dict()
    assert len(spec["hconcat"]) == 2
    left = _layers(spec["hconcat"][0], spec["datasets"])
    assert left[0]["encoding"]["yOffset"]["field"] == "group"
    right = _layers(spec["hconcat"][1], spec["datasets"])
    assert _values(right[0]) == [{"x": 0.0}]  # the no-gap reference
    assert _values(right[2])[0]["estimate"] == -0.2
    assert _values(right[2])[0]["comparison"] == "female − male"
    assert right[2]["encoding"]["yOffset"]["field"] == "comparison"
    alone = charts.subgroup_gap_chart(groups).to_dict()
    assert "hconcat" not in alone


def test_large_chart_is_not_row_limited_and_renders() -> None:
    """Altair's default 5,000-row limit must not break a 2,000-stimulus x 8-model circumplex."""
    n = 2000
    rng = np.random.default_rng(0)
    consensus = pd.DataFrame(
        {
            "stimulus": [f"s{i}.png" for i in range(n)],
            "stimulus_id": range(n),
            "valence_mean": rng.uniform(-1, 1, n),
            "valence_sd": rng.uniform(0, 0.3, n),
            "arousal_mean": rng.uniform(-1, 1, n),
            "arousal_sd": rng.uniform(0, 0.3, n),
            "majority_label": rng.choice(["happiness", "anger"], n),
        }
    )
    predictions = pd.DataFrame(
        {
            "stimulus_id": np.tile(np.arange(n), 8),
            "model_id": np.repeat([f"m{k}" for k in range(8)], n),
            "label": "happiness",
            "valence": rng.uniform(-1, 1, 8 * n),
            "arousal": rng.uniform(-1, 1, 8 * n),
        }
    )
    spec = charts.circumplex_chart(consensus, predictions).to_dict()
    link = next(l for l in _layers(spec) if _mark(l) == "rule" and l["encoding"].get("x2", {}).get("field") == "valence")
    assert len(_values(link)) == 8 * n


def test_every_builder_renders_to_svg(consensus: pd.DataFrame, predictions: pd.DataFrame) -> None:
    """vl-convert compiles each spec: catches encodings Vega-Lite rejects at render time."""
    estimates = pd.DataFrame({"model_id": ["m1"], "group": ["g"], "estimate": [0.5], "ci_low": [0.4], "ci_high": [0.6]})
    built = [
        charts.confusion_heatmap(pd.DataFrame({"true_label": ["fear"], "predicted_label": ["anger"], "count": [2]})),
        charts.recall_bars(estimates.assign(emotion="fear")),
        charts.circumplex_chart(consensus, predictions),
        charts.model_heatmap(pd.DataFrame({"model_a": ["m1"], "model_b": ["m1"], "estimate": [1.0]})),
        charts.forest_plot(estimates, ceiling={"estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6}),
        charts.subgroup_gap_chart(estimates, estimates),
    ]
    for chart in built:
        assert chart.to_dict()["autosize"] == {"type": "pad"}  # plot size as declared in Streamlit too
        svg = chart_to_svg(chart)
        assert svg.lstrip().startswith("<svg") and "NaN" not in svg


def test_ceiling_band_is_the_raters_median_and_iqr():
    ceiling = pd.DataFrame([
        {"dimension": "valence", "metric": "ccc", "estimate": 0.7, "ci_low": 0.65, "ci_high": 0.75,
         "human_q25": 0.6, "human_q75": 0.8},
    ])
    band = charts.ceiling_band(ceiling, "valence", "ccc")
    assert (band["estimate"], band["ci_low"], band["ci_high"]) == (0.7, 0.6, 0.8)
    assert charts.ceiling_band(ceiling, "arousal", "ccc") is None


def test_every_report_figure_is_valid_vega_lite(sessions) -> None:
    """Exports skip Altair's schema validation (exports.chart_spec); this is where it happens."""
    from core.agreement.report import build_report
    from core.reporting.html_report import report_figures
    from core.workflows.catalog import describe_models
    from core.workflows.demo import load_demo
    from db.analysis import load_predictions, load_ratings, load_stimuli

    with sessions.begin() as session:
        study_id = load_demo(session, actor=Role.OPERATOR)
        ratings, stimuli = load_ratings(session, study_id), load_stimuli(session, study_id)
        predictions, models = load_predictions(session, study_id), describe_models(session)
    figures = report_figures(build_report(ratings, predictions, stimuli, models, n_boot=0), predictions)
    assert {figure.section for figure in figures} >= {"Agreement", "Confusion", "Circumplex", "Model diversity"}
    for figure in figures:
        figure.chart.to_dict(validate=True)


def test_forest_plot_legend_names_band_median_and_raters() -> None:
    estimates = pd.DataFrame({"model_id": ["m1"], "estimate": [0.5], "ci_low": [0.4], "ci_high": [0.6]})
    ceiling = {"estimate": 0.65, "ci_low": 0.55, "ci_high": 0.75, "label": "human IQR"}
    humans = pd.DataFrame({"rater": ["r1", "r2"], "estimate": [0.6, 0.7]})
    spec = charts.forest_plot(estimates, ceiling=ceiling, human_scores=humans).to_dict(validate=True)
    band, rule, ticks, _, _ = _layers(spec)
    colour = band["encoding"]["color"]
    assert colour["scale"]["domain"] == ["human IQR", charts.MEDIAN_LABEL, charts.RATERS_LABEL]
    assert "legend" in colour and colour["legend"]["orient"] == "bottom"
    assert _values(rule)[0]["what"] == charts.MEDIAN_LABEL and _values(ticks)[0]["what"] == charts.RATERS_LABEL
    svg = chart_to_svg(spec)  # the exported figure carries the legend too
    assert "median of the human raters" in svg and "human IQR" in svg


def test_subgroup_legend_sits_below_the_panels() -> None:
    groups = pd.DataFrame({"model_id": ["m", "m"], "group": ["female", "male"], "estimate": [0.5, 0.6],
                           "ci_low": [0.4, 0.5], "ci_high": [0.6, 0.7]})
    spec = charts.subgroup_gap_chart(groups).to_dict(validate=True)
    colours = [leaf["encoding"]["color"] for leaf in _layers(spec) if "color" in leaf.get("encoding", {})]
    assert colours and all(c["legend"]["orient"] == "bottom" for c in colours)
