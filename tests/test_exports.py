"""Exports: CSV, XLSX round trip, paper-ready LaTeX, SVG and PNG rendering of a real chart."""

from __future__ import annotations

import io
from pathlib import Path

import altair as alt
import numpy as np
import openpyxl
import pandas as pd
import pytest

from core.reporting import exports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model_id": ["enet_b0_8_va_mtl", "emonet_8"],
            "metric": ["CCC valence", "CCC valence"],
            "estimate": [0.6234, 0.5],
            "ci_low": [0.5512, np.nan],
            "ci_high": [0.6849, np.nan],
            "n": [120, 118],
        }
    )


def test_csv_has_bom_and_round_trips(table: pd.DataFrame) -> None:
    data = exports.to_csv_bytes(table)
    assert data.startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
    pd.testing.assert_frame_equal(back, table)


def test_xlsx_round_trip_keeps_every_table(table: pd.DataFrame) -> None:
    other = pd.DataFrame({"rater": ["r1", "r2"], "estimate": [0.7, 0.8]})
    data = exports.to_xlsx_bytes({"model vs human": table, "leave-one-rater-out": other})
    sheets = pd.read_excel(io.BytesIO(data), sheet_name=None, engine="openpyxl")
    assert list(sheets) == ["model vs human", "leave-one-rater-out"]
    pd.testing.assert_frame_equal(sheets["model vs human"], table)
    pd.testing.assert_frame_equal(sheets["leave-one-rater-out"], other)


def test_xlsx_sheet_names_are_legal_and_unique() -> None:
    long = "model x model agreement / CCC [valence]: every pair"
    data = exports.to_xlsx_bytes({long: pd.DataFrame({"a": [1]}), long + "!": pd.DataFrame({"a": [2]})})
    names = openpyxl.load_workbook(io.BytesIO(data)).sheetnames
    assert len(names) == 2 and len(set(names)) == 2
    assert all(len(n) <= 31 and not set(n) & set("[]:*?/\\") for n in names)


def test_xlsx_refuses_empty_mapping() -> None:
    with pytest.raises(ValueError, match="at least one"):
        exports.to_xlsx_bytes({})


def test_latex_is_booktabs_with_merged_ci_and_escaped_names(table: pd.DataFrame) -> None:
    text = exports.to_latex(table, caption="Model vs human (n = 120)", label="tab:va")
    assert r"\begin{tabular}{lllr}" in text
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert text.count(rule) == 1
    assert r"enet\_b0\_8\_va\_mtl & CCC valence & 0.62 [0.55, 0.68] & 120 \\" in text
    assert r"emonet\_8 & CCC valence & 0.50 & 118 \\" in text  # no CI: estimate alone
    assert r"model\_id & metric & estimate [95\% CI] & n \\" in text
    assert r"\caption{Model vs human (n = 120)}" in text and r"\label{tab:va}" in text
    assert "ci_low" not in text and "nan" not in text


def test_latex_digits_and_missing_estimate() -> None:
    frame = pd.DataFrame({"what": ["a & b"], "estimate": [np.nan], "ci_low": [0.1], "ci_high": [0.2], "p": [0.01234]})
    text = exports.to_latex(frame, caption="c", label="l", digits=3)
    assert r"a \& b & -- [0.100, 0.200] & 0.012 \\" in text


def test_latex_without_estimate_columns_formats_numbers() -> None:
    text = exports.to_latex(pd.DataFrame({"form": ["ICC(A,1)"], "F": [11.027248]}), caption="ICC", label="t")
    assert r"ICC(A,1) & 11.03 \\" in text


def _chart() -> alt.Chart:
    return alt.Chart(pd.DataFrame({"x": [0.1, 0.5], "y": [0.2, 0.9]})).mark_point().encode(x="x:Q", y="y:Q")


def test_svg_and_png_render(tmp_path: Path) -> None:
    svg = exports.chart_to_svg(_chart())
    assert svg.lstrip().startswith("<svg")
    png1 = exports.chart_to_png(_chart(), scale=1)
    png2 = exports.chart_to_png(_chart(), scale=2)
    assert png1.startswith(PNG_MAGIC) and png2.startswith(PNG_MAGIC)
    width = lambda png: int.from_bytes(png[16:20], "big")  # IHDR width
    assert width(png2) == pytest.approx(2 * width(png1), abs=2)


def test_spec_dict_renders_like_the_chart() -> None:
    assert exports.chart_to_svg(_chart().to_dict()) == exports.chart_to_svg(_chart())


def test_save_chart_writes_both_formats_even_with_dots_in_stem(tmp_path: Path) -> None:
    paths = exports.save_chart(_chart(), tmp_path / "figs" / "ccc.valence")
    assert [p.name for p in paths] == ["ccc.valence.svg", "ccc.valence.png"]
    assert paths[0].read_text().lstrip().startswith("<svg")
    assert paths[1].read_bytes().startswith(PNG_MAGIC)
