"""Streamlit helpers shared by the analysis pages: tables and charts with their downloads,
and the filter widgets (batches, models, subgroup attribute).

Download contents are generated only when a button is clicked (callables), so rendering a
page never pays for XLSX or PNG conversion.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import altair as alt
import pandas as pd
import streamlit as st

from core.agreement import TIE_POLICIES
from core.agreement.reliability import UNEQUAL_RATER_POLICIES
from core.agreement.report import TABLES
from core.reporting import exports
from sqlalchemy.orm import Session, sessionmaker

from ui import analysis_data as data
from ui.analysis_ahead import STATE_PREFIX, remembered
from ui.analysis_data import DEFAULT_N_BOOT, DEFAULT_SEED, Filters, Settings, StudyFrames
from ui.text import plain

CSV_MIME = "text/csv"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TEX_MIME = "application/x-tex"
SVG_MIME = "image/svg+xml"
PNG_MIME = "image/png"
DISPLAY_DIGITS = 3
TIE_HELP = {
    "none": "ties have no majority label (left out of label metrics, counted in n_excluded)",
    "intended": "a tie that includes the intended emotion resolves to it; other ties as 'none'",
}
UNEQUAL_HELP = {
    "modal": "Fleiss' kappa on stimuli with the most common number of raters",
    "all": "Fleiss' kappa on every stimulus (generalised for unequal rater counts)",
}


SINGULAR = {"batches": "batch", "models": "model"}


def _remember(name: str, value: object) -> None:
    st.session_state[STATE_PREFIX + name] = value


def slug(text: str) -> str:
    """A file-name-safe version of a table or chart name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_").lower() or "table"


def display_frame(table: pd.DataFrame, digits: int = DISPLAY_DIGITS) -> pd.DataFrame:
    """Estimates shown as ``0.623 [0.551, 0.685]``; the raw numbers stay in the downloads."""
    return exports.with_estimate_text(table, digits)


@dataclass(frozen=True)
class Contents:
    """Which rating batches and models the current page's numbers (and downloads) contain."""

    batches: tuple[int, ...]
    models: tuple[str, ...]

    def note(self) -> str:
        batches = ", ".join(f"#{b}" for b in self.batches) or "none"
        return f"Rating batches {batches}; models: {', '.join(self.models) or 'none'}."

    def tag(self) -> str:
        """A file-name part: ``batches-1-2``."""
        return "batches-" + "-".join(map(str, self.batches))

    def sheet(self) -> pd.DataFrame:
        return pd.DataFrame({"contains": ["rating batch"] * len(self.batches) + ["model"] * len(self.models),
                             "id": [*map(str, self.batches), *self.models]})


def current_contents() -> Contents | None:
    return remembered("contents", None)


def _stem(name: str) -> str:
    contents = current_contents()
    return slug(name) + (f"_{contents.tag()}" if contents else "")


def _with_contents_sheet(sheets: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    contents = current_contents()
    return {**sheets, "contents": contents.sheet()} if contents else dict(sheets)


def _latex(table: pd.DataFrame, caption: str, stem: str) -> str:
    contents = current_contents()
    note = f"% {contents.note()}\n" if contents else ""
    return note + exports.to_latex(table, caption=caption, label=f"tab:{slug(stem)}")


def table_downloads(table: pd.DataFrame, name: str, *, caption: str, key: str) -> None:
    """CSV, XLSX and LaTeX download buttons for one table; each names the batches it holds
    (file name, a ``contents`` sheet, a LaTeX comment)."""
    stem = _stem(name)
    csv, xlsx, tex, tex_full = st.columns(4)
    csv.download_button(
        "CSV", lambda: exports.to_csv_bytes(table), file_name=f"{stem}.csv", mime=CSV_MIME,
        key=f"{key}-csv", on_click="ignore", icon=":material/download:",
    )
    xlsx.download_button(
        "XLSX", lambda: exports.to_xlsx_bytes(_with_contents_sheet({name: table})), file_name=f"{stem}.xlsx",
        mime=XLSX_MIME, key=f"{key}-xlsx", on_click="ignore", icon=":material/download:",
    )
    tex.download_button(
        "LaTeX", lambda: _latex(exports.compact_table(table), caption, name),
        file_name=f"{stem}.tex", mime=TEX_MIME, key=f"{key}-tex", on_click="ignore",
        icon=":material/download:", help="Paper table: model, estimate [95% CI], n",
    )
    tex_full.download_button(
        "LaTeX (all columns)", lambda: _latex(table, caption, name),
        file_name=f"{stem}_full.tex", mime=TEX_MIME, key=f"{key}-tex-full", on_click="ignore",
        icon=":material/download:",
    )


def show_table(
    table: pd.DataFrame,
    name: str,
    *,
    caption: str,
    key: str,
    columns: Sequence[str] | None = None,
    lead: Sequence[str] = (),
    compact: Sequence[str] = (),
) -> None:
    """A table with its CIs merged for reading, and CSV/XLSX/LaTeX downloads of ``columns``.

    ``lead`` names columns shown first on screen (``estimate`` for the merged estimate), so
    the figures of a wide table stay in view. ``compact`` names the only columns a wide table
    shows by default (numbers to :data:`DISPLAY_DIGITS` digits), so it fits without horizontal
    scrolling; a toggle shows every column. The downloads keep every column in the table's order.
    """
    shown = table[list(columns)] if columns is not None else table
    st.markdown(f"**{plain(name)}**")
    if shown.empty:
        st.caption("No rows for the current data and filters.")
        return
    st.caption(plain(caption))
    display = display_frame(shown)
    order, config = leading(display, lead), None
    if compact and not st.toggle(f"All {len(display.columns)} columns", key=f"{key}-all-columns"):
        order = display_names(display, compact)
        config = {column: st.column_config.NumberColumn(format=f"%.{DISPLAY_DIGITS}f")
                  for column in order if pd.api.types.is_float_dtype(display[column])}
    st.dataframe(display, hide_index=True, width="stretch", column_order=order, column_config=config)
    table_downloads(shown, name, caption=caption, key=key)


def display_names(display: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """The display's columns among ``names``, in that order; ``estimate`` stands for its merged
    CI column."""
    renamed = {"estimate": next((c for c in display.columns if c.startswith("estimate")), "estimate")}
    return [column for column in (renamed.get(name, name) for name in names) if column in display.columns]


def leading(display: pd.DataFrame, lead: Sequence[str]) -> list[str] | None:
    """The display's columns with ``lead`` first."""
    if not lead:
        return None
    first = display_names(display, lead)
    return first + [column for column in display.columns if column not in first]


def workbook_download(tables: Mapping[str, pd.DataFrame], name: str, *, key: str) -> None:
    """One XLSX with every non-empty table as a sheet."""
    non_empty = {sheet: frame for sheet, frame in tables.items() if not frame.empty}
    if not non_empty:
        return
    st.download_button(
        f"All tables (XLSX, {len(non_empty)} sheets)", lambda: exports.to_xlsx_bytes(_with_contents_sheet(non_empty)),
        file_name=f"{_stem(name)}.xlsx", mime=XLSX_MIME, key=key, on_click="ignore",
        icon=":material/download:",
    )


def chart_downloads(chart: exports.ChartLike, name: str, *, key: str) -> None:
    """SVG and PNG download buttons for one chart."""
    stem = slug(name)
    svg, png, _ = st.columns([1, 1, 4])
    svg.download_button(
        "SVG", lambda: exports.chart_to_svg(chart), file_name=f"{stem}.svg", mime=SVG_MIME,
        key=f"{key}-svg", on_click="ignore", icon=":material/download:",
    )
    png.download_button(
        "PNG", lambda: exports.chart_to_png(chart), file_name=f"{stem}.png", mime=PNG_MIME,
        key=f"{key}-png", on_click="ignore", icon=":material/download:",
    )


def show_chart(chart: exports.ChartLike, name: str, *, key: str) -> None:
    """Render a chart (or its cached Vega-Lite spec) with SVG/PNG downloads below it."""
    spec = exports.chart_spec(chart)
    st.vega_lite_chart(spec=spec, width="content", key=f"{key}-chart")
    chart_downloads(spec, name, key=key)


NO_ESTIMATES = " (no estimates)"


def estimate_choice(
    label: str,
    options_table: pd.DataFrame,
    columns: Sequence[str],
    *,
    key: str,
    format_func: Callable[[tuple], str],
    estimates: pd.DataFrame | None = None,
) -> tuple:
    """A selectbox over the distinct ``columns`` values of ``options_table`` (e.g. dimension and
    metric) that opens on the first choice with an estimate in ``estimates`` (default: the same
    table): a study without valence ratings opens on a label metric, not an empty chart. Choices
    with no estimate at all say so."""
    columns = list(columns)
    options = list(options_table[columns].drop_duplicates().itertuples(index=False, name=None))
    source = options_table if estimates is None else estimates
    estimated = set(source.loc[source["estimate"].notna(), columns].itertuples(index=False, name=None))
    index = next((i for i, option in enumerate(options) if option in estimated), 0)
    return st.selectbox(
        plain(label), options, index=index, key=key,
        format_func=lambda option: format_func(option) + ("" if option in estimated else NO_ESTIMATES),
    )


def batch_filter(batches: pd.DataFrame, *, key: str) -> tuple[int, ...] | None:
    """Multiselect of rating batches; ``None`` when all are selected (the shared default)."""
    if batches.empty:
        return None
    labels = {int(row.batch_id): f"#{row.batch_id} {row.file} ({row.ratings} ratings)" for row in batches.itertuples()}
    chosen = _filter_multiselect(
        "batches", "Rating batches", list(labels), key=key, format_func=labels.get,
        help="Excluded and deleted batches are never analysed (manage them on the Ratings page).",
    )
    if not chosen:
        st.sidebar.warning("No batch selected: analysing all batches. Pick at least one to filter.")
    value = None if not chosen or set(chosen) == set(labels) else tuple(sorted(chosen))
    _remember("batches", value)
    return value


def _filter_multiselect(kind: str, label: str, options: list, *, key: str, **widget: object) -> list:
    """A sidebar multiselect where "all" stays all when batches or models are added later (by a
    coauthor, in another session); a narrower choice stays, and the newcomers are announced
    until they are included. They count as seen only then: marking them seen when merely
    announced lost the announcement on a page change (the widget is rebuilt from the narrower
    choice), leaving the old batches selected without a word."""
    earlier = remembered(kind)
    seen = remembered(f"{kind}-seen")
    new = [option for option in options if seen is not None and option not in seen]
    if key not in st.session_state or (earlier is None and new):
        st.session_state[key] = [o for o in (earlier or options) if o in options] or list(options)
    if earlier is not None and new:
        word = kind if len(new) > 1 else SINGULAR[kind]
        st.sidebar.info(f"{len(new)} new {plain(word)} since you opened this page.")
        st.sidebar.button("Include", key=f"{key}-include", on_click=_include, args=(kind, key, new))
    else:
        _remember(f"{kind}-seen", tuple(options))
    return st.sidebar.multiselect(plain(label), options, key=key, **widget)


def chip_label(model_id: str, pipeline: str | None) -> str:
    """The model id first: a sidebar chip cuts long text at the end, and ids are unique."""
    return f"{model_id} ({pipeline})" if pipeline and pipeline != "nan" else str(model_id)


def _include(kind: str, key: str, new: list) -> None:
    st.session_state[key] = [*st.session_state.get(key, []), *new]
    _remember(f"{kind}-seen", (*(remembered(f"{kind}-seen") or ()), *new))


def model_filter(
    model_ids: Sequence[str], pipelines: Mapping[str, str] | None = None, *, key: str
) -> tuple[str, ...] | None:
    """Multiselect of models with predictions; ``None`` when all are selected."""
    if not model_ids:
        return None
    pipelines = pipelines or {}
    chosen = _filter_multiselect(
        "models", "Models", list(model_ids), key=key, format_func=lambda m: chip_label(m, pipelines.get(m)),
    )
    if not chosen:
        st.sidebar.warning("No model selected: showing all models.")
    value = None if not chosen or set(chosen) == set(model_ids) else tuple(sorted(chosen))
    _remember("models", value)
    return value


def settings_widgets(*, key: str) -> Settings:
    """The statistical choices, in a sidebar expander; shown on every page, never hidden."""
    current: Settings = remembered("settings", Settings())
    with st.sidebar.expander("Statistical settings"):
        n_boot = st.number_input(
            "Bootstrap resamples", min_value=100, max_value=20000, step=100,
            value=int(current.n_boot), key=f"{key}-nboot",
            help=f"Percentile CIs over stimuli (default {DEFAULT_N_BOOT}).",
        )
        seed = st.number_input("Bootstrap seed", min_value=0, value=int(current.seed), step=1,
                               key=f"{key}-seed", help=f"Default {DEFAULT_SEED}; same seed, same CIs.")
        ties = st.selectbox(
            "Majority-label ties", TIE_POLICIES, index=TIE_POLICIES.index(current.ties),
            key=f"{key}-ties", help="; ".join(f"{plain(k)}: {TIE_HELP.get(k, '')}" for k in TIE_POLICIES),
        )
        unequal = st.selectbox(
            "Fleiss' kappa with unequal raters", UNEQUAL_RATER_POLICIES,
            index=UNEQUAL_RATER_POLICIES.index(current.unequal), key=f"{key}-unequal",
            help="; ".join(f"{plain(k)}: {UNEQUAL_HELP.get(k, '')}" for k in UNEQUAL_RATER_POLICIES),
        )
    settings = Settings(n_boot=int(n_boot), seed=int(seed), ties=ties, unequal=unequal)
    _remember("settings", settings)
    return settings


def subgroup_selector(columns: Sequence[str], *, key: str) -> str | None:
    """Choice of the stimulus attribute to split by; ``None`` when there is none."""
    if not columns:
        st.caption(
            "No stimulus attribute has 2 to 12 distinct values: add metadata (poser gender, age "
            "group, stimulus set, ...) on the Stimuli page to split agreement by subgroup."
        )
        return None
    options = list(columns)
    earlier = remembered("subgroup")
    chosen = st.selectbox(
        "Split by stimulus attribute", options,
        index=options.index(earlier) if earlier in options else 0, key=key,
    )
    _remember("subgroup", chosen)
    return chosen


@dataclass(frozen=True)
class AnalysisContext:
    """What an analysis page renders: the report tables, the frames behind them, the choices."""

    tables: dict[str, pd.DataFrame]
    frames: StudyFrames
    filters: Filters
    settings: Settings
    pipelines: dict[str, str]
    key: tuple

    @property
    def has_models(self) -> bool:
        return data.has_models(self.tables)

    def chart(self, choices: tuple, build: Callable[[], alt.TopLevelMixin]) -> dict:
        """The chart's spec, cached under this report's key plus the page's ``choices``."""
        return data.chart_spec((*self.key, *choices), build)


def analysis_context(
    factory: sessionmaker[Session], study_id: int, *, key: str,
    page_filters: Callable[[StudyFrames, Filters, dict[str, str]], Filters] | None = None,
) -> AnalysisContext:
    """Sidebar filters and settings, then the (cached) report; stops with a hint without ratings.

    ``page_filters(frames, filters, pipelines)`` adds a page's own sidebar choices (consensus
    representatives, replication findings) to the shared filters before the report is computed."""
    batches = data.active_batches(factory, study_id)
    batch_ids = batch_filter(batches, key=f"{key}-batches")
    frames = data.study_frames(factory, study_id, Filters(batch_ids=batch_ids))
    if frames.ratings.empty:
        st.info(
            "No human ratings in this study yet (or every batch is excluded). Upload a rating "
            "file on the Ratings page: agreement is measured against human raters first."
        )
        st.stop()
    pipelines = dict(zip(frames.models["model_id"].astype(str), frames.models["pipeline"].astype(str)))
    model_ids = data.model_ids_with_predictions(frames)
    filters = Filters(batch_ids=batch_ids, model_ids=model_filter(model_ids, pipelines, key=f"{key}-models"))
    if page_filters is not None:
        filters = page_filters(frames, filters, pipelines)
    settings = settings_widgets(key=f"{key}-settings")
    _remember("contents", Contents(
        tuple(filters.batch_ids or sorted(int(b) for b in batches["batch_id"])) if not batches.empty else (),
        tuple(filters.model_ids or model_ids)))
    key = data.report_key(factory, study_id, filters, settings)
    tables = data.report(factory, study_id, filters, settings, key)
    return AnalysisContext(tables, frames, filters, settings, {**pipelines, **data.pipelines(tables)}, key)


def no_models_message() -> None:
    """The state of a study with human ratings only."""
    st.info(
        "No model predictions for this study yet. Run models on the Models page or import "
        "precomputed predictions; each model then appears here beside the human ceiling."
    )


def html_report_download(context: AnalysisContext, title: str) -> None:
    """One self-contained HTML file with every table and figure (``report --html``)."""
    from core.reporting.html_report import render_html, report_figures

    def page() -> str:
        contents = current_contents()
        manifest = {"batches": list(contents.batches) if contents else "all active",
                    "models": list(contents.models) if contents else "all with predictions",
                    "boot": context.settings.n_boot, "seed": context.settings.seed,
                    "ties": context.settings.ties, "unequal": context.settings.unequal}
        figures = report_figures(context.tables, context.frames.predictions)
        return render_html(context.tables, figures, title=title, manifest=manifest, descriptions=TABLES)

    st.download_button("HTML report (offline, for reviewers)", page, file_name=f"{slug(title)}.html",
                       mime="text/html", key="agreement-html", on_click="ignore", icon=":material/download:")
