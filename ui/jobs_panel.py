"""The study's jobs, live: every session sees every job with its progress and can cancel it.

Also starts the embedded default's worker: one daemon thread per server process (through
st.cache_resource), so a laptop with SQLite needs no separate ``python -m core worker``. On a web
host of a shared deployment set FACEAGREE_IN_PROCESS_WORKER=0 and run workers on GPU hosts.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from core.workflows import jobs
from core.workflows.worker import Worker, in_process_worker_enabled
from core.access import Action
from db import jobs as job_db
from ui.chrome import can, role
from ui.db_errors import friendly_writes
from ui.text import plain

LIVE_SECONDS, QUIET_SECONDS = 2, 15
ACTIVE = ("queued", "running")


@st.cache_resource(show_spinner=False)
def _start_worker(url: str, _factory: sessionmaker[Session]) -> threading.Thread:
    thread = threading.Thread(target=Worker(_factory).run_forever, daemon=True,
                              name="faceagree-in-process-worker")
    thread.start()
    return thread


def ensure_in_process_worker(factory: sessionmaker[Session]) -> bool:
    """Start this server's worker thread once, unless disabled; returns whether one runs."""
    if not in_process_worker_enabled():
        return False
    _start_worker(factory.kw["bind"].url.render_as_string(hide_password=True), factory)
    return True


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    seconds = (datetime.now(timezone.utc) - moment).total_seconds()
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _progress_text(job) -> str:
    if job.state not in ACTIVE:
        return job.error or _result_text(job.result)
    if not job.total:
        return "waiting for a worker" if job.state == "queued" else f"{job.step or 'starting'}…"
    rate = f" · {job.rate:.1f}/s" if job.rate else ""
    left = f" · about {job.eta_seconds:.0f} s left" if job.eta_seconds is not None else ""
    stopping = " · stopping after this batch" if job.cancel_requested else ""
    return f"{job.step}: {job.done} of {job.total}{rate}{left}{stopping}"


def _result_text(result: dict | None) -> str:
    if not result:
        return ""
    if "reports" in result:
        return "; ".join(result["reports"])
    if "faces" in result:
        return ", ".join(f"{status}: {n}" for status, n in result["faces"].items())
    return str(result.get("summary") or result.get("out") or "")


def _cancel(factory: sessionmaker[Session], job_id: int) -> None:
    with friendly_writes(stop=False), factory.begin() as session:
        job_db.request_cancel(session, job_id, actor=role())


def jobs_panel(factory: sessionmaker[Session], study_id: int) -> None:
    """The study's jobs with a cancel button on active ones: refreshed every LIVE_SECONDS while
    one is queued or running, every QUIET_SECONDS otherwise (a 2 s poll of an idle panel kept
    the server 5 % busy per open Models page)."""
    live = _has_active(_jobs(factory, study_id))
    (_live_panel if live else _quiet_panel)(factory, study_id)


@st.fragment(run_every=LIVE_SECONDS)
def _live_panel(factory: sessionmaker[Session], study_id: int) -> None:
    _draw(factory, study_id, live=True)


@st.fragment(run_every=QUIET_SECONDS)
def _quiet_panel(factory: sessionmaker[Session], study_id: int) -> None:
    _draw(factory, study_id, live=False)


def _jobs(factory: sessionmaker[Session], study_id: int) -> pd.DataFrame:
    with factory() as session:
        return job_db.study_jobs(session, study_id, limit=20)


def _has_active(table: pd.DataFrame) -> bool:
    return bool(not table.empty and table["state"].isin(ACTIVE).any())


def _draw(factory: sessionmaker[Session], study_id: int, live: bool) -> None:
    table = _jobs(factory, study_id)
    if _has_active(table) != live:  # a job started or ended: switch the refresh rate
        st.rerun()
    if table.empty:
        st.caption("No jobs yet for this study.")
        return
    for job in table[table["state"].isin(ACTIVE)].itertuples():
        left, right = st.columns([5, 1])
        share = job.done / job.total if job.total else 0.0
        who = f" · by {job.queued_by}" if job.queued_by else ""
        left.progress(share, text=plain(f"#{job.id} {jobs.describe(job.kind, job.params)}{who} — "
                                        f"{_progress_text(job)}"))
        if can(Action.RUN_MODELS):
            right.button("Cancel", key=f"cancel_job_{job.id}", disabled=bool(job.cancel_requested),
                         on_click=_cancel, args=(factory, job.id))
    st.dataframe(pd.DataFrame({
        "job": table["id"],
        "what": [jobs.describe(kind, params) for kind, params in zip(table["kind"], table["params"])],
        "state": table["state"],
        "progress": [_progress_text(job) for job in table.itertuples()],
        "queued by": table["queued_by"],
        "worker": table["worker"].fillna(""),
        "queued": [_ago(moment) for moment in table["queued_at"]],
    }), hide_index=True)
