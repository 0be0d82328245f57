"""Home page: create or pick a study, load the demo, see counts, coverage and what to do next."""

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from core.access import Action
from core.ratings.stimulus_keys import KEY_MODES
from db import stimuli as stimulus_db
from db.queries import study_counts
from ui.chrome import STUDY_KEY, can, page_setup, role
from ui.db_errors import friendly_writes
from ui.text import plain

PAGES = Path(__file__).parent

factory, study_id = page_setup("FaceAgree", needs_study=False)
st.caption("How well do facial-emotion AI models agree with human raters?")


def page_path(word: str) -> str | None:
    """The pages/ file whose name contains ``word`` (pages are added by several issues)."""
    matches = sorted(PAGES.glob(f"*{word}*.py"))
    return f"pages/{matches[0].name}" if matches else None


def create_study_form() -> None:
    with st.form("create_study", clear_on_submit=True):
        name = st.text_input("Study name", placeholder="e.g. Pilot 2026")
        description = st.text_area("Description", height=80)
        mode = st.selectbox(
            "Rating files name stimuli by", list(KEY_MODES), format_func=KEY_MODES.get
        )
        folded = st.checkbox("Ignore upper/lower case in stimulus ids", value=True)
        if st.form_submit_button("Create study"):
            try:
                with friendly_writes(), factory.begin() as session:
                    study = stimulus_db.create_study(
                        session, name, description, stimulus_key_mode=mode,
                        case_insensitive=folded,
                        actor=role(),
                    )
            except ValueError as error:
                st.error(plain(error))
                return
            st.session_state[STUDY_KEY] = study.id
            st.rerun()


def load_demo_button() -> None:
    st.write(
        "A small study of **synthetic cartoon faces** with simulated raters and models, "
        "to try every page."
    )
    if not st.button("Load demo study"):
        return
    try:
        from core.workflows.demo import load_demo  # lands with the ratings work; absent in early builds
    except ImportError:
        st.warning("The demo study is not available in this build.")
        return
    with st.status("Loading the synthetic demo study…", expanded=True) as status:
        with friendly_writes(), factory.begin() as session:
            demo_id = load_demo(session, actor=role())
        status.update(label="Demo study loaded.", state="complete")
    st.session_state[STUDY_KEY] = demo_id
    st.rerun()


def bundle_section() -> None:
    """Import a study bundle (``python -m core import-bundle``); export the current study."""
    from core.workflows.bundle import BundleError, export_bundle, import_bundle

    upload = st.file_uploader("Study bundle (.faceagree.zip)", type=["zip"], key="bundle-upload")
    if upload is not None and st.button("Import bundle"):
        try:
            with factory.begin() as session:
                summary = import_bundle(session, upload, actor=role())
        except BundleError as error:
            st.error(f"{plain(error)}. Nothing was imported.")
            return
        renamed = f" (a study named {summary.renamed_from!r} exists already)" if summary.renamed_from else ""
        st.success(plain(f"Imported as {summary.study!r}{renamed}."))
        st.session_state[STUDY_KEY] = summary.study_id
    if study_id is not None:
        def bundle_bytes() -> bytes:
            with tempfile.TemporaryDirectory() as folder, factory() as session:
                path = export_bundle(session, study_id, Path(folder) / "study.faceagree.zip").path
                return path.read_bytes()

        st.download_button("Export this study as a bundle", bundle_bytes, file_name="study.faceagree.zip",
                           mime="application/zip", on_click="ignore", icon=":material/download:")


def checklist(progress: dict[str, int]) -> None:
    steps = [
        ("Import stimulus images", progress["stimuli"] > 0, "Stimuli"),
        ("Attach metadata (intended emotion, poser attributes)", progress["described"] > 0,
         "Stimuli"),
        ("Upload human rating batches", progress["batches"] > 0, "Ratings"),
        ("Run or import model predictions", progress["models"] > 0, "Models"),
        ("Compare models with the human ceiling", False, "Agreement"),
    ]
    for label, done, page in steps:
        path = page_path(page)
        if path:
            st.page_link(path, label=step_markdown(label, done))
        else:
            st.markdown(step_markdown(label, done))


def step_markdown(label: str, done: bool) -> str:
    return f"{'✅' if done else '⬜'} {plain(label)}"


if can(Action.CREATE_STUDY):
    with st.expander("Create a study", expanded=study_id is None):
        create_study_form()
if can(Action.LOAD_DEMO):
    with st.expander("Demo", expanded=study_id is None):
        load_demo_button()
if can(Action.IMPORT_BUNDLE):  # a bundle holds the original face images and rating files
    with st.expander("Study bundle: move a study between deployments"):
        bundle_section()

if study_id is None:
    st.info("Create a study or load the demo study to begin.")
    st.stop()

with factory() as session:
    counts = study_counts(session, study_id)
    progress = stimulus_db.setup_progress(session, study_id)
    distribution = stimulus_db.rater_count_distribution(session, study_id)

METRICS = [("Stimuli", "stimuli"), ("Rating batches", "batches"), ("Ratings", "ratings"),
           ("Raters", "raters")]
for col, (label, key) in zip(st.columns(len(METRICS)), METRICS):
    col.metric(plain(label), f"{counts[key]:,}")

left, right = st.columns(2)
with left:
    st.subheader("Raters per stimulus")
    if distribution:
        frame = pd.DataFrame(
            {"raters": list(distribution), "stimuli": list(distribution.values())}
        ).set_index("raters")
        st.bar_chart(frame, x_label="raters per stimulus", y_label="stimuli")
    else:
        st.caption("No stimuli yet.")
with right:
    st.subheader("Coverage gaps")
    min_raters = st.number_input("Flag stimuli with fewer raters than", 1, 1000, 3)
    with factory() as session:
        gaps = stimulus_db.coverage_gaps(session, study_id, int(min_raters))
    if gaps:
        st.warning(f"{len(gaps)} stimuli have fewer than {min_raters:,} raters.")
        st.dataframe(
            pd.DataFrame(gaps, columns=["stimulus", "raters"]), hide_index=True, height=240
        )
    elif counts["stimuli"]:
        st.success(f"Every stimulus has at least {min_raters:,} raters.")

st.subheader("What to do next")
checklist(progress)
