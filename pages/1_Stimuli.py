"""Stimuli: upload images and ZIPs, attach metadata, browse and inspect the study's stimuli."""

import math

import pandas as pd
import streamlit as st

from core.access import Action, may_see_faces
from core.io.images import ImageError, load_rgb
from core.io.tabular import TableError, read_table
from core.ratings.labels import CANONICAL
from core.ratings.stimulus_keys import KEY_MODES
from core.workflows.stimuli import (
    MetadataImportReport,
    StimulusImportReport,
    import_files,
    import_metadata,
    parse_code_map,
)
from db import stimuli as stimulus_db
from ui.chrome import can, page_setup, role
from ui.db_errors import friendly_writes
from ui.face_panel import show_detection
from ui.text import plain
from ui.thumbnails import placeholder, shown_thumbnail

PAGE_SIZE = 48
GRID_COLUMNS = 6
DETECT = "(detect)"
REPORT_KEY = "stimuli_import_report"
METADATA_REPORT_KEY = "stimuli_metadata_report"
DETAIL_KEY = "stimulus_detail"
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "zip"]

factory, study_id = page_setup("Stimuli")


def upload_section() -> None:
    files = st.file_uploader(
        "Images or ZIP archives (folders inside a ZIP are kept in the stimulus path)",
        type=IMAGE_TYPES, accept_multiple_files=True, key="stimulus_files",
    )
    precropped = st.checkbox(
        "These images are already face crops (skip face detection)", key="precropped"
    )
    if st.button("Import images", disabled=not files, type="primary"):
        bar = st.progress(0.0, text="Reading files…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total if total else 1.0, text=f"{done:,} of {total:,} images")

        with st.status("Importing stimuli…", expanded=False) as status:
            with friendly_writes(), factory.begin() as session:
                report = import_files(
                    session, study_id, [(f.name, f) for f in files],
                    progress=progress, precropped=precropped,
                    actor=role(),
                )
            status.update(label=f"Import finished: {plain(report.summary())}", state="complete")
        st.session_state[REPORT_KEY] = report
    show_import_report(st.session_state.get(REPORT_KEY))


def show_import_report(report: StimulusImportReport | None) -> None:
    if report is None:
        return
    (st.success if report.ok else st.warning)(f"Last import: {plain(report.summary())}.")
    problems = [e for e in report.entries if e.status != "added"]
    if problems:
        st.dataframe(
            pd.DataFrame(
                [(e.file, e.status, e.message) for e in problems],
                columns=["file", "status", "message"],
            ),
            hide_index=True,
        )
    st.download_button(
        "Download the import report (CSV)", report.to_csv(), "stimulus_import_report.csv",
        "text/csv", on_click="ignore",
    )


def metadata_section() -> None:
    st.caption(
        "A CSV, TSV or XLSX table with one row per stimulus: an id column and any attributes "
        "(intended emotion, poser gender, age, stimulus set, …)."
    )
    upload = st.file_uploader(
        "Metadata table", type=["csv", "tsv", "txt", "xlsx"], key="metadata_file"
    )
    if upload is None:
        show_metadata_report(st.session_state.get(METADATA_REPORT_KEY))
        return
    data = upload.getvalue()
    try:
        table = read_table(upload.name, data)
    except TableError as error:
        st.error(plain(error))
        return
    st.dataframe(table.head(10), hide_index=True)
    columns = [DETECT, *table.columns]
    id_column = st.selectbox("Stimulus id column", columns, key="metadata_id_column")
    intended = st.selectbox("Intended emotion column", columns, key="metadata_intended")
    codes = st.text_input(
        "Label codes used in the intended column (optional)", placeholder="1=anger, 2=disgust",
        key="metadata_codes",
    )
    if st.button("Attach metadata", type="primary"):
        try:
            with friendly_writes(), factory.begin() as session:
                report = import_metadata(
                    session, study_id, upload.name, data,
                    id_column=None if id_column == DETECT else id_column,
                    intended_column=None if intended == DETECT else intended,
                    code_map=parse_code_map(codes) or None,
                    actor=role(),
                )
        except ValueError as error:
            st.error(plain(error))
            return
        st.session_state[METADATA_REPORT_KEY] = report
    show_metadata_report(st.session_state.get(METADATA_REPORT_KEY))


def show_metadata_report(report: MetadataImportReport | None) -> None:
    if report is None:
        return
    (st.success if report.ok else st.warning)(plain(report.summary()))
    st.caption(
        f"Id column: {plain(report.id_column)} · intended emotion column: "
        f"{plain(report.intended_column or 'none')} · attributes: "
        f"{plain(', '.join(report.attribute_columns.values()) or 'none')}"
    )
    if report.issues:
        st.dataframe(
            pd.DataFrame(
                [(i.row, i.stimulus, i.reason) for i in report.issues],
                columns=["row", "stimulus", "reason"],
            ),
            hide_index=True,
        )
        st.download_button(
            "Download the rows with problems (CSV)", report.to_csv(), "metadata_problems.csv",
            "text/csv", on_click="ignore",
        )


def key_section() -> None:
    with factory() as session:
        study = stimulus_db.get_study(session, study_id)
    st.caption("How rating and metadata files name a stimulus.")
    modes = list(KEY_MODES)
    mode = st.selectbox(
        "Stimulus id", modes, index=modes.index(study.stimulus_key), format_func=KEY_MODES.get,
        key="key_mode",
    )
    folded = st.checkbox(
        "Ignore upper/lower case", value=study.key_case_insensitive, key="key_case"
    )
    if st.button("Save stimulus id setting"):
        try:
            with friendly_writes(), factory.begin() as session:
                stimulus_db.set_key_mode(session, study_id, mode, folded, actor=role())
        except ValueError as error:
            st.error(plain(error))
        else:
            st.success("Saved.")


def faces_setting_section() -> None:
    with factory() as session:
        shown = stimulus_db.get_study(session, study_id).reviewers_see_faces
    allow = st.toggle("Reviewers may see face images", value=shown, key="reviewers_see_faces",
                      help="Off: reviewers see small blurred thumbnails only, never the original images.")
    if allow != shown:
        with friendly_writes(), factory.begin() as session:
            stimulus_db.set_reviewers_see_faces(session, study_id, allow, actor=role())
        st.success("Saved.")


def faces_shown() -> bool:
    """Whether this session may see the study's original face images (else blurred thumbnails)."""
    with factory() as session:
        return may_see_faces(role(), stimulus_db.get_study(session, study_id).reviewers_see_faces)


def gallery_section() -> None:
    search, emotions = st.columns([2, 1])
    text = search.text_input("Search path and metadata", key="gallery_search")
    wanted = emotions.multiselect(
        "Intended emotion", [*CANONICAL, stimulus_db.NO_INTENDED], key="gallery_intended"
    )
    with factory() as session:
        _, total = stimulus_db.search_stimuli(session, study_id, text, wanted, limit=0)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = st.number_input(f"Page (of {pages:,})", 1, pages, 1, key="gallery_page")
    with factory() as session:
        items, total = stimulus_db.search_stimuli(
            session, study_id, text, wanted, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
    st.caption(f"{total:,} stimuli match.")
    faces_visible = faces_shown()
    if not faces_visible:
        st.caption("Face images are hidden from reviewers in this study: blurred thumbnails only.")
    pictures = [(item, shown_thumbnail(item.thumbnail, faces_visible)) for item in items]
    missing = sum(picture is None for _, picture in pictures)
    if missing:
        st.caption(f"Grey squares: {missing:,} of these stimuli have no stored image to show.")
    for start in range(0, len(pictures), GRID_COLUMNS):
        for column, (item, picture) in zip(st.columns(GRID_COLUMNS), pictures[start : start + GRID_COLUMNS]):
            column.image(picture or placeholder(), caption=plain(item.path), width="stretch")
            column.button(
                "Details", key=f"detail_{item.id}", on_click=st.session_state.__setitem__,
                args=(DETAIL_KEY, item.id),
            )


def detail_section(stimulus_id: int) -> None:
    with factory() as session:
        stimulus = stimulus_db.get_stimulus(session, stimulus_id)
    if stimulus is None or stimulus.study_id != study_id:
        st.session_state.pop(DETAIL_KEY, None)
        return
    st.subheader(plain(stimulus.path))
    picture, facts = st.columns([3, 2])
    try:
        with picture:
            if faces_shown():
                show_detection(factory, stimulus.sha256, load_rgb(stimulus.sha256))
            else:
                st.image(shown_thumbnail(stimulus.thumbnail, False) or placeholder(), width="stretch")
    except ImageError as error:
        picture.error(plain(error))
    facts.dataframe(
        pd.DataFrame(
            [
                ("size", f"{stimulus.width} x {stimulus.height}"),
                ("type", stimulus.media_type),
                ("sha256", stimulus.sha256),
                ("pre-cropped face", "yes" if stimulus.precropped else "no"),
                ("intended emotion", stimulus.intended_emotion or "—"),
                *((a.key, a.value or "") for a in sorted(stimulus.attributes, key=lambda a: a.key)),
            ],
            columns=["field", "value"],
        ),
        hide_index=True,
    )
    if can(Action.UPLOAD_STIMULI):
        options = [None, *CANONICAL]
        label = facts.selectbox(
            "Intended emotion", options, index=options.index(stimulus.intended_emotion),
            format_func=lambda value: value or "none (not posed)", key=f"intended_{stimulus.id}",
        )
        if facts.button("Save intended emotion", key=f"save_intended_{stimulus.id}"):
            with friendly_writes(), factory.begin() as session:
                stimulus_db.set_intended(session, stimulus.id, label, actor=role())
            st.rerun()
    if facts.button("Close", key="close_detail"):
        st.session_state.pop(DETAIL_KEY, None)
        st.rerun()


tab_names = ["Gallery", *(["Upload images", "Metadata"] if can(Action.UPLOAD_STIMULI) else []),
             *(["Study settings"] if can(Action.CHANGE_STUDY_SETTINGS) else [])]
gallery, *write_tabs = st.tabs([plain(name) for name in tab_names])
if can(Action.UPLOAD_STIMULI):
    upload, metadata, *write_tabs = write_tabs
    with upload:
        upload_section()
    with metadata:
        metadata_section()
if can(Action.CHANGE_STUDY_SETTINGS):
    with write_tabs[0]:
        key_section()
        st.divider()
        faces_setting_section()
with gallery:
    if st.session_state.get(DETAIL_KEY) is not None:
        detail_section(st.session_state[DETAIL_KEY])
        st.divider()
    gallery_section()
