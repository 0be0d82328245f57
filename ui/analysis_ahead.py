"""Analysis work done before it is asked for (issue 10: first Agreement view within 4 s).

Once a page has rendered, ``app.py`` calls :func:`prepare_analysis`: one background thread per
server process imports the statistics and chart modules (scipy, altair: about 2 s of CPU on a
cold server) and computes the current study's report for this session's filter choices
through ``ui.analysis_data.compute_ahead``. The first analysis page the user opens then finds
the report ready, or waits for the computation already under way instead of starting another.

Kept apart from ``ui.analysis_data`` so that scheduling imports nothing heavy on a page's thread.
"""

from __future__ import annotations

import logging
import queue
import threading

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

STATE_PREFIX = "analysis:"  # filter choices survive moving between the analysis pages

_LOGGER = logging.getLogger(__name__)
_REQUESTS: queue.SimpleQueue[tuple] = queue.SimpleQueue()
_QUEUED: set[tuple] = set()
_LOCK = threading.Lock()
_thread: threading.Thread | None = None  # the one worker, started by the first request


def remembered(name: str, default: object = None) -> object:
    """This session's analysis choice ``name`` (batches, models, settings, ...)."""
    return st.session_state.get(STATE_PREFIX + name, default)


def prepare_analysis(factory: sessionmaker[Session], study_id: int | None) -> None:
    """Queue the report of ``study_id`` with this session's batches, models and settings (the
    shared defaults on a first visit); returns at once. A request already queued is not
    queued twice; one already computed costs the worker a data-fingerprint query."""
    global _thread
    if study_id is None:
        return
    request = (factory, study_id, remembered("batches"), remembered("models"), remembered("settings"))
    with _LOCK:
        if request in _QUEUED:
            return
        _QUEUED.add(request)
        if _thread is None:
            _thread = threading.Thread(target=_serve, name="faceagree-analysis-ahead", daemon=True)
            _thread.start()
    _REQUESTS.put(request)


def _serve() -> None:
    while True:
        request = _REQUESTS.get()
        try:
            _prepare(*request)
        except Exception:  # a failed preparation only means the page computes it itself
            _LOGGER.exception("computing the analysis ahead failed")
        finally:
            with _LOCK:
                _QUEUED.discard(request)


def _prepare(factory: sessionmaker[Session], study_id: int, batch_ids: tuple[int, ...] | None,
             model_ids: tuple[str, ...] | None, settings: object) -> None:
    from ui import analysis_data as data

    filters = data.Filters(batch_ids=batch_ids, model_ids=model_ids)
    data.compute_ahead(factory, study_id, filters, settings if isinstance(settings, data.Settings) else data.Settings())
    _warm_charts()


def _warm_charts() -> None:
    """Altair's import and its first chart's lazy set-up (together about 0.5 s), paid here
    instead of by the first chart a user waits for."""
    import altair as alt
    import pandas as pd

    from core.reporting import charts  # noqa: F401  (the pages' chart module, imported ahead)

    alt.Chart(pd.DataFrame({"x": [0.0]})).mark_point().encode(x="x:Q").to_dict(validate=False)
