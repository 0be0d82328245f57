"""UI-layer cache for the analysis pages: data and reports keyed by explicit, hashable keys.

A key is the database URL, the study id, the study's data fingerprint
(``db.versions.analysis_version``: a few aggregate queries) and the filters as tuples. Nothing
is keyed by a DataFrame or array (Streamlit would hash large ones from a sample). Any import,
exclusion or new prediction changes the fingerprint, so a cached report is never stale; a
re-render with unchanged data and filters is a cache hit. Default filters ("everything") map
to ``None`` so the four pages share one computed report.

A report can also be computed ahead, outside any page run (:func:`compute_ahead`, scheduled by
``ui.analysis_ahead`` once a page has rendered): the first analysis page then finds it ready.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from core.agreement.report import build_report
from core.reporting import exports
from core.workflows.catalog import describe_models
from db import analysis as db_analysis
from db.ratings import list_batches
from ui.chrome import data_version, db_key

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
MAX_CACHED_REPORTS = 16
MAX_CACHED_CHARTS = 256
MAX_AHEAD_REPORTS = 4

# Keys computed in this server process: a hint to skip the progress box on a cache hit (an
# evicted key is recomputed by ``_report`` behind a spinner).
_COMPUTED_KEYS: set[tuple] = set()
# Reports computed (or being computed) ahead by key, until a page hands them to the cache.
_AHEAD: OrderedDict[tuple, Future[dict[str, pd.DataFrame]]] = OrderedDict()
# The frames those computations loaded, by the key of ``_frames``, until a page's frames cache
# takes them: loading a FER+-size study's ratings and predictions again costs about 2 s.
_AHEAD_FRAMES: OrderedDict[tuple, StudyFrames] = OrderedDict()
_AHEAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Filters:
    """What the report is computed on; ``None`` means everything or the default (shared across
    pages). ``consensus_of``: representatives of the all-pipelines consensus model;
    ``replication_gaps``: (attribute, group_a, group_b) findings of the replication table."""

    batch_ids: tuple[int, ...] | None = None
    model_ids: tuple[str, ...] | None = None
    consensus_of: tuple[str, ...] | None = None
    replication_gaps: tuple[tuple[str, str, str], ...] | None = None


@dataclass(frozen=True)
class Settings:
    """Statistical choices that change the answer; pages show them, never hide them."""

    n_boot: int = DEFAULT_N_BOOT
    seed: int = DEFAULT_SEED
    ties: str = "none"
    unequal: str = "modal"


@dataclass(frozen=True)
class StudyFrames:
    """The long frames of ``db.analysis`` plus the model description frame."""

    ratings: pd.DataFrame
    predictions: pd.DataFrame
    stimuli: pd.DataFrame
    models: pd.DataFrame


def _load_frames(factory: sessionmaker[Session], study_id: int, batch_ids: tuple[int, ...] | None) -> StudyFrames:
    with factory() as session:
        ratings = db_analysis.load_ratings(session, study_id, batch_ids)
        predictions = db_analysis.load_predictions(session, study_id)
        stimuli = db_analysis.load_stimuli(session, study_id)
        models = describe_models(session)
    return StudyFrames(ratings, predictions, stimuli, models)


@st.cache_data(show_spinner=False, max_entries=MAX_CACHED_REPORTS)
def _frames(
    _factory: sessionmaker[Session], db: str, study_id: int, version: tuple, batch_ids: tuple[int, ...] | None
) -> StudyFrames:
    with _AHEAD_LOCK:
        ahead = _AHEAD_FRAMES.pop((db, study_id, version, batch_ids), None)
    return ahead if ahead is not None else _load_frames(_factory, study_id, batch_ids)


def study_frames(factory: sessionmaker[Session], study_id: int, filters: Filters = Filters()) -> StudyFrames:
    """Ratings (of the chosen batches), all predictions, stimuli and models of the study."""
    return _frames(factory, db_key(factory), study_id, data_version(factory, study_id), filters.batch_ids)


@st.cache_data(show_spinner=False, max_entries=MAX_CACHED_REPORTS)
def _batches(_factory: sessionmaker[Session], db: str, study_id: int, version: tuple) -> pd.DataFrame:
    with _factory() as session:
        batches = list_batches(session, study_id, include_deleted=False)
    return pd.DataFrame(
        [{"batch_id": b.id, "file": b.file_name, "ratings": b.n_ratings, "raters": b.n_raters}
         for b in batches if not b.excluded],
        columns=["batch_id", "file", "ratings", "raters"],
    )


def active_batches(factory: sessionmaker[Session], study_id: int) -> pd.DataFrame:
    """Batches that analyses use (not excluded, not deleted): batch_id, file, ratings, raters."""
    return _batches(factory, db_key(factory), study_id, data_version(factory, study_id))


def _build(
    factory: sessionmaker[Session],
    db: str,
    study_id: int,
    version: tuple,
    filters: Filters,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, pd.DataFrame]:
    return _tables(_frames(factory, db, study_id, version, filters.batch_ids), filters, settings, progress)


def _tables(
    frames: StudyFrames, filters: Filters, settings: Settings, progress: Callable[[int, int], None] | None = None
) -> dict[str, pd.DataFrame]:
    predictions = frames.predictions
    if filters.model_ids is not None:
        predictions = predictions[predictions["model_id"].isin(filters.model_ids)]
    return build_report(
        frames.ratings, predictions, frames.stimuli, frames.models,
        n_boot=settings.n_boot, seed=settings.seed, ties=settings.ties, unequal=settings.unequal,
        consensus_of=None if filters.consensus_of is None else list(filters.consensus_of),
        replication_gaps=None if filters.replication_gaps is None else list(filters.replication_gaps),
        progress=progress,
    )


@st.cache_data(show_spinner="Computing agreement statistics…", max_entries=MAX_CACHED_REPORTS)
def _report(
    _factory: sessionmaker[Session],
    db: str,
    study_id: int,
    version: tuple,
    filters: Filters,
    settings: Settings,
    _computed: dict[str, pd.DataFrame] | None = None,
) -> dict[str, pd.DataFrame]:
    """The cached report. ``_computed`` (not part of the key) stores a report computed outside
    the cache with a progress bar: Streamlit cannot replay elements updated inside a cached
    function, so the first computation happens outside and is handed in here."""
    if _computed is not None:
        return _computed
    return _build(_factory, db, study_id, version, filters, settings)


def report_key(
    factory: sessionmaker[Session], study_id: int, filters: Filters = Filters(), settings: Settings = Settings()
) -> tuple:
    """The explicit cache key of a report: database, study, data fingerprint, filters, settings."""
    return (db_key(factory), study_id, data_version(factory, study_id), filters, settings)


def compute_ahead(
    factory: sessionmaker[Session], study_id: int, filters: Filters = Filters(), settings: Settings = Settings()
) -> None:
    """Compute a report outside any page run (``ui.analysis_ahead`` calls this from a background
    thread), so the first page showing it finds it ready; a page arriving meanwhile waits for
    this computation instead of starting its own. Uses no Streamlit cache (no script context)."""
    key = report_key(factory, study_id, filters, settings)
    future: Future[dict[str, pd.DataFrame]] = Future()
    with _AHEAD_LOCK:
        if key in _COMPUTED_KEYS or key in _AHEAD:
            return
        _AHEAD[key] = future
        while len(_AHEAD) > MAX_AHEAD_REPORTS:
            _AHEAD.popitem(last=False)
    future.set_running_or_notify_cancel()
    try:
        frames = _load_frames(factory, study_id, filters.batch_ids)
        with _AHEAD_LOCK:
            _AHEAD_FRAMES[(*key[:3], filters.batch_ids)] = frames
            while len(_AHEAD_FRAMES) > MAX_AHEAD_REPORTS:
                _AHEAD_FRAMES.popitem(last=False)
        future.set_result(_tables(frames, filters, settings))
    except Exception as error:  # the page computes again in the foreground and shows the error
        future.set_exception(error)


def _ahead(key: tuple) -> Future[dict[str, pd.DataFrame]] | None:
    with _AHEAD_LOCK:
        return _AHEAD.get(key)


def _ahead_tables(future: Future[dict[str, pd.DataFrame]] | None) -> dict[str, pd.DataFrame] | None:
    """The tables computed ahead, waiting for them while they are in progress; ``None`` when
    nothing was computed ahead or it failed."""
    if future is None or future.exception() is not None:
        return None
    return future.result()


def report(
    factory: sessionmaker[Session],
    study_id: int,
    filters: Filters = Filters(),
    settings: Settings = Settings(),
    key: tuple | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of ``core.agreement.report.build_report`` for the study and filters, from the cache
    (or :func:`compute_ahead`) when possible; the first computation shows a status box with a
    progress bar. ``key`` is :func:`report_key` when the caller already has it."""
    key = key or report_key(factory, study_id, filters, settings)
    if key in _COMPUTED_KEYS:
        return _report(factory, *key)
    ahead = _ahead(key)
    tables = _ahead_tables(ahead) if ahead is not None and ahead.done() else None
    if tables is None:
        with st.status("Computing agreement statistics…", expanded=True) as status:
            waiting = ahead is not None and not ahead.done()
            bar = st.progress(0.0, text="finishing the computation started in the background" if waiting
                              else "loading ratings and predictions")

            def progress(done: int, total: int) -> None:
                bar.progress(done / total, text=f"step {done:,} of {total:,}")

            tables = _ahead_tables(ahead)
            if tables is None:
                tables = _build(factory, *key, progress=progress)
            status.update(label="Agreement statistics ready", state="complete", expanded=False)
    tables = _report(factory, *key, _computed=tables)
    _COMPUTED_KEYS.add(key)
    with _AHEAD_LOCK:
        _AHEAD.pop(key, None)
    return tables


@st.cache_data(show_spinner=False, max_entries=MAX_CACHED_CHARTS)
def _chart_spec(key: tuple, _build: Callable[[], alt.TopLevelMixin]) -> dict:
    return exports.chart_spec(_build())


def chart_spec(key: tuple, build: Callable[[], alt.TopLevelMixin]) -> dict:
    """The Vega-Lite spec of ``build()``, cached under ``key``.

    Building and validating an Altair chart costs 0.1-0.5 s; a page re-render must not pay it
    again. ``key`` must determine the chart: the report key plus every choice the chart uses.
    """
    return _chart_spec(key, build)


def has_models(tables: dict[str, pd.DataFrame]) -> bool:
    """Whether the report includes at least one model with predictions."""
    models = tables.get("models", pd.DataFrame())
    return not models.empty and bool((models.get("n_predictions", pd.Series(dtype=int)) > 0).any())


def pipelines(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Model id -> pipeline, from the report's models table."""
    models = tables.get("models", pd.DataFrame())
    if models.empty:
        return {}
    return dict(zip(models["model_id"].astype(str), models["pipeline"].astype(str)))


def model_ids_with_predictions(frames: StudyFrames) -> list[str]:
    """Models that have at least one usable prediction for the study."""
    return sorted(np.unique(frames.predictions["model_id"].astype(str)).tolist())
