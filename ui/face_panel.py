"""Streamlit widget: a stimulus with its stored face detection drawn on it, plus a status line."""

from __future__ import annotations

import numpy as np
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from core.faces.overlay import draw_faces
from core.workflows.face_stage import describe, result_from_row
from db.faces import detections_for
from ui.text import plain


def show_detection(
    factory: sessionmaker[Session], stimulus_sha256: str, image_rgb: np.ndarray
) -> None:
    """Overlay of the stored detection(s) of one stimulus; a hint when detection has not run."""
    with factory() as session:
        rows = detections_for(session, stimulus_sha256)
    if not rows:
        st.image(image_rgb, width="stretch")
        st.caption("Face detection has not run on this stimulus yet (it runs before a model).")
        return
    row = rows[0]
    if len(rows) > 1:
        by_detector = {r.detector: r for r in rows}
        chosen = st.radio(
            "Detector", list(by_detector), horizontal=True, key=f"face_panel_{stimulus_sha256}",
            format_func=plain,
        )
        row = by_detector[chosen]
    result = result_from_row(row)
    st.image(draw_faces(image_rgb, result.faces, result.chosen), width="stretch")
    if result.status == "error":
        st.error(plain(describe(result)))
    elif result.face is None:
        st.warning(plain(describe(result)))
    else:
        st.caption(plain(describe(result)))
