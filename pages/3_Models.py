"""Models: the zoo as the paper's comparison table, checkpoints, cached runs, imported predictions.

Face stage, model runs and fp16 checks are queued as jobs (core.workflows.jobs) and run by a
worker, so they outlive this browser tab and every coauthor sees their progress.
"""

import pandas as pd
import streamlit as st

from core.access import Action
from ui.chrome import can, page_setup, role
from ui.db_errors import friendly_writes
from ui.jobs_panel import ensure_in_process_worker, jobs_panel
from ui.prediction_status import failures, prediction_counts
from ui.text import code, plain

# The title first: the model code imports PyTorch, which takes seconds on a server's first visit.
factory, study_id = page_setup("Models", needs_study=False)
with st.spinner("Loading PyTorch and the model code (seconds, on the first visit only)…"):
    from core.faces.detection import (
        DETECTOR_VERSIONS,
        DETECTORS,
        DetectorUnavailable,
        download_mtcnn,
        mtcnn_status,
    )
    from core.io.network import is_offline
    from core.io.storage import sha256_bytes
    from core.io.tabular import TableError, read_table
    from core.models import checkpoints, registry
    from core.ratings.labels import CANONICAL
    from core.ratings.scales import parse_scale
    from core.reporting import exports
    from core.workflows import catalog
    from core.workflows import inference, jobs
    from core.workflows import predictions_import as pi
    from core.workflows.face_stage import CHOICE_RULES
    from core.workflows.stimuli import parse_code_map
    from db.faces import status_counts
    from db.predictions import study_images

STATES = {
    "ready": ("ready", "green"),
    "missing": ("missing", "orange"),
    "mismatch": ("hash mismatch", "red"),
    "unverified": ("unverified", "yellow"),
    "imported": ("imported", "violet"),
}
IMPORT_KEY = "models_last_import"
IMPORT_ROUND_KEY = "models_import_round"  # bumped after an import: empties the uploader and its form
CARD_KEY = "models_last_card"
CHECKPOINT_KEY = "models_last_checkpoint"
QUEUED_KEY = "models_last_queued"
WHO_KEY = "models_queued_by"
FACE_STATUS_WORDS = {"one": "one face", "several": "several faces", "none": "no face",
                     "error": "unreadable", "not run": "not run yet"}
NONE = "(none)"
DETECTOR_CHOICES = [name for name in DETECTORS if name != "precropped"]


def overview(counts: pd.DataFrame | None) -> pd.DataFrame:
    """Every model's checkpoint state, with this study's prediction ``counts`` beside it."""
    with factory() as session:
        table = inference.model_overview(session)
    if counts is None or counts.empty:
        return table.assign(ok=0, failed=0)
    merged = table.merge(counts, on="model_id", how="left")
    return merged.fillna({"ok": 0, "failed": 0}).astype({"ok": int, "failed": int})


def comparison_section() -> None:
    st.subheader("Model comparison")
    with factory() as session:
        table = catalog.comparison_table(session)
    st.dataframe(table, hide_index=True, height="content")
    left, right = st.columns(2)
    left.download_button("Download CSV", exports.to_csv_bytes(table), "models.csv", "text/csv")
    latex = exports.to_latex(table, "Facial emotion recognition models compared", "tab:models")
    right.download_button("Download LaTeX", latex.encode(), "models.tex", "application/x-tex")


def status_section(models: pd.DataFrame) -> None:
    st.subheader("Checkpoints and predictions")
    if CHECKPOINT_KEY in st.session_state:
        st.success(plain(st.session_state.pop(CHECKPOINT_KEY)))
    shown = models.assign(state=models["state"].map(lambda s: STATES.get(s, (s, "gray"))[0]))
    st.dataframe(  # the study's counts before the long license text, so they stay in view
        shown[["model_id", "name", "source", "state", "ok", "failed", "license"]],
        hide_index=True, height="content",
        column_config={
            "ok": st.column_config.NumberColumn("predictions", help="stimuli of this study with a stored prediction"),
            "failed": st.column_config.NumberColumn("failed", help="stimuli whose newest prediction failed"),
        },
    )
    for row in models.itertuples():
        label, colour = STATES.get(row.state, (row.state, "gray"))
        with st.expander(f"{plain(row.name)} · {code(row.model_id)} · {plain(label)}"):
            st.badge(label, color=colour)
            st.caption(f"License: {plain(row.license or 'not stated')} · pipeline {plain(row.pipeline)}")
            if row.source == "imported":
                st.write("Predictions imported from another tool; they are analysed like any model.")
                continue
            if row.state != "ready":
                st.warning(plain(row.message))
                st.text(f"Where to get it:\n{row.where_to_get}")
                if can(Action.REGISTER_MODEL):
                    checkpoint_actions(row.model_id)


def checkpoint_actions(model_id: str) -> None:
    spec = catalog.get_spec(model_id, None) if model_id in registry.builtin_specs() else None
    if spec is None:
        return
    if all(slot.url for slot in spec.checkpoints):
        if st.button("Download", key=f"download_{model_id}"):
            bar = st.progress(0.0, text="Downloading…")
            try:
                checkpoints.download(spec, progress=lambda done, total: bar.progress(
                    min(done / total, 1.0) if total else 0.0, text=f"{done / 1e6:.1f} MB of {total / 1e6:.1f} MB"))
            except checkpoints.NoConnectionError:
                bar.empty()
                st.error("No internet connection: register a local copy of the file below.")
            except checkpoints.CheckpointError as error:
                bar.empty()
                st.error(plain(error))
            else:
                st.session_state[CHECKPOINT_KEY] = f"{model_id}: downloaded and verified."
                st.rerun()
    names = [slot.name for slot in spec.checkpoints]
    index = 0
    if len(names) > 1:
        index = st.selectbox("File slot", range(len(names)), format_func=names.__getitem__,
                             key=f"slot_{model_id}")
    upload = st.file_uploader(f"Register a local copy of {plain(names[index])}", key=f"upload_{model_id}")
    if upload is not None and st.button("Register file", key=f"register_{model_id}"):
        try:
            path = checkpoints.register_local(spec, index, upload.getvalue())
        except checkpoints.CheckpointError as error:
            st.error(plain(error))
        else:  # rerun so the table and the Run tab see the new state
            st.session_state[CHECKPOINT_KEY] = (
                f"{model_id}: registered {path.name}; {checkpoints.checkpoint_status(spec).message}"
            )
            st.rerun()


def face_options() -> tuple[str, str]:
    weights = mtcnn_status()
    left, middle = st.columns(2)
    detector = left.selectbox(
        "Face detector", DETECTOR_CHOICES, index=0 if weights.state == "ready" else DETECTOR_CHOICES.index("haar"),
        help="MTCNN gives 5 landmarks (needed by aligned crops); Haar works offline without them.",
    )
    rule = middle.selectbox("Face used when several are found", CHOICE_RULES)
    if detector == "mtcnn" and weights.state != "ready":
        st.warning("The MTCNN face detector's weights are not on this machine yet. Click **Download "
                   "MTCNN weights** (needs internet, 2 MB), or choose the **haar** detector, which works "
                   "offline but gives no landmarks.")
        if st.button("Download MTCNN weights"):
            try:
                download_mtcnn()
            except DetectorUnavailable as error:
                st.error("No internet connection: choose the haar detector, or ask whoever runs this "
                         "server to install the weights (`python -m core install-mtcnn`)."
                         if is_offline(error.__cause__ or error) else plain(error))
            else:
                st.rerun()
    return detector, rule


def face_counts_text(counts: dict[str, int]) -> str:
    """``one face: 4, no face: 1`` rather than the raw status names."""
    return ", ".join(f"{FACE_STATUS_WORDS.get(status, status)}: {n}" for status, n in counts.items())


def queue(kind: str, params: dict) -> None:
    with friendly_writes():
        job_id = jobs.enqueue(factory, kind, study_id, params,
                              queued_by=st.session_state.get(WHO_KEY, ""), actor=role())
    st.session_state[QUEUED_KEY] = f"Queued job #{job_id}: {jobs.describe(kind, params)}."


def face_stage_section(detector: str, rule: str) -> None:
    with factory() as session:
        images = study_images(session, study_id)
        detected = [image.sha256 for image in images if not image.precropped]
        counts = status_counts(session, detected, DETECTOR_VERSIONS[detector]) if detected else {}
    precropped = len(images) - len(detected)
    st.caption(f"{len(images)} images: {precropped:,} pre-cropped; detection ({plain(detector)}): "
               + plain(face_counts_text(counts) or "nothing to detect")
               + ". Models run it themselves when needed; run it here to check the faces first.")
    st.button("Run face stage", disabled=not images, on_click=queue,
              args=("face_stage", {"detector": detector, "rule": rule}))


def run_section(models: pd.DataFrame, detector: str, rule: str) -> None:
    st.subheader("Run models")
    runnable = models[models["source"] != "imported"]
    ready = runnable[runnable["state"] == "ready"]
    names = dict(zip(models["model_id"], models["name"]))
    if ready.empty:
        st.info("No model has its checkpoint yet: download or register one in the **Models** tab, "
                "add a model from a card in the **Add a model** tab, or bring predictions computed "
                "elsewhere (FaceReader, py-feat, another machine) through the **Import predictions** tab.")
        return
    chosen = st.multiselect("Models to run", list(ready["model_id"]), default=list(ready["model_id"]),
                            format_func=lambda m: f"{names[m]} ({m})")
    not_ready = sorted(set(runnable["model_id"]) - set(ready["model_id"]))
    if not_ready:
        st.caption("Not runnable until their checkpoints are ready: " + plain(", ".join(not_ready)))
    left, middle, right = st.columns(3)
    half = left.checkbox("Half precision (fp16)", help="needs a CUDA worker; stored apart from fp32 results")
    batch_size = middle.number_input("Batch size", 1, 1024, 32)
    retry = right.checkbox("Retry failed stimuli")
    aligned = st.checkbox(
        "Pre-cropped stimuli are aligned faces (Multitask-CNN)",
        help="Tick when your pre-cropped stimuli are already aligned as the Multitask-CNN authors "
             "align faces: they then get the official resize and centre crop directly instead of "
             "being refused for lack of landmarks. Stored apart from landmark-aligned results; "
             "other models ignore it.")
    params = {"models": chosen, "half": half, "batch_size": int(batch_size), "detector": detector,
              "rule": rule, "retry_failed": retry, "aligned_crops": aligned}
    st.button("Run models", type="primary", disabled=not chosen, on_click=queue,
              args=("model_run", params))
    if chosen:
        model_id = st.selectbox("Check fp16 against fp32 for", chosen)
        st.button("Check fp16", help="needs a CUDA worker", on_click=queue,
                  args=("fp16_check", {"model": model_id, "detector": detector, "rule": rule}))


def failures_section(counts: pd.DataFrame) -> None:
    failed = failures(factory, study_id, counts)
    if failed.empty:
        st.caption("No failed stimuli.")
        return
    st.write(f"{len(failed)} failed stimulus predictions (the newest result per model):")
    st.dataframe(failed[["model_id", "stimulus", "detector", "error"]], hide_index=True)


def import_section() -> None:
    st.write("Predictions of tools that cannot run here (FaceReader, py-feat, AFFDEX, …): one row "
             "per stimulus with category scores and/or a label, valence and arousal.")
    if IMPORT_KEY in st.session_state:
        message = st.session_state.pop(IMPORT_KEY)
        st.success(plain(message))
        st.toast(plain(message), icon=":material/check_circle:")  # seen wherever the page is scrolled
    round_ = st.session_state.setdefault(IMPORT_ROUND_KEY, 0)
    upload = st.file_uploader("Prediction file", type=["csv", "tsv", "txt", "xlsx"],
                              key=f"predictions_file_{round_}")
    if upload is None:
        return
    data = upload.getvalue()
    tag = sha256_bytes(data)[:12]
    try:
        columns = list(read_table(upload.name, data).columns)
        with factory() as session:
            detected = pi.preview(session, study_id, upload.name, data).mapping
    except (TableError, ValueError, LookupError) as error:
        st.error(plain(error))
        return
    try:
        mapping = mapping_form(columns, detected, tag)
        with factory() as session:
            checked = pi.preview(session, study_id, upload.name, data, mapping)
    except ValueError as error:
        st.error(plain(error))
        return
    show_preview(checked)
    import_form(upload.name, data, mapping, checked, tag)


def _column_choice(label: str, columns: list[str], current: str | None, key: str, allow_none: bool = True):
    options = ([NONE] if allow_none else []) + columns
    index = options.index(current) if current in options else 0
    value = st.selectbox(plain(label), options, index=index, key=key)
    return None if value == NONE else value


def mapping_form(columns: list[str], detected: pi.PredictionMapping, tag: str) -> pi.PredictionMapping:
    st.markdown("**Columns** (detected; change any)")
    cells = st.columns(4)
    with cells[0]:
        stimulus = _column_choice("Stimulus", columns, detected.stimulus, f"imp_stimulus_{tag}", False)
    with cells[1]:
        label = _column_choice("Label", columns, detected.label, f"imp_label_{tag}")
    with cells[2]:
        valence = _column_choice("Valence", columns, detected.valence, f"imp_valence_{tag}")
        valence_range = parse_scale(st.text_input("Valence range", "-1..1", key=f"imp_vr_{tag}"))
    with cells[3]:
        arousal = _column_choice("Arousal", columns, detected.arousal, f"imp_arousal_{tag}")
        arousal_range = parse_scale(st.text_input("Arousal range", "-1..1", key=f"imp_ar_{tag}"))
    st.markdown("**Score columns** per emotion")
    score_cells = st.columns(4)
    scores = {}
    for position, emotion in enumerate(CANONICAL):
        with score_cells[position % 4]:
            column = _column_choice(emotion, columns, detected.scores.get(emotion), f"imp_score_{emotion}_{tag}")
        if column:
            scores[emotion] = column
    ranges = ["0..1", "0..100"]
    score_range = st.radio("Scores range", ranges, horizontal=True, key=f"imp_sr_{tag}", format_func=plain,
                           index=ranges.index(f"{detected.score_range.low:g}..{detected.score_range.high:g}"))
    codes = st.text_input("Label codes (e.g. 1=anger, 2=happy)", key=f"imp_codes_{tag}")
    return pi.PredictionMapping(
        stimulus, label, scores, valence, arousal, valence_range, arousal_range,
        parse_scale(score_range), parse_code_map(codes),
    )


def show_preview(checked: pi.ImportPreview) -> None:
    for hint in checked.hints:
        st.info(plain(hint))
    if checked.ok:
        st.success(f"All {len(checked.rows)} rows are valid.")
    else:
        st.error(f"{len(checked.bad_rows)} of {len(checked.rows)} rows have problems (row 1 is the header):")
        st.dataframe(checked.issues, hide_index=True)
    st.dataframe(checked.table().head(200), hide_index=True)


def import_form(file_name: str, data: bytes, mapping, checked: pi.ImportPreview, tag: str) -> None:
    left, right = st.columns(2)
    model_id = left.text_input("Model id", placeholder="facereader-9", key=f"imp_id_{tag}")
    name = right.text_input("Display name", placeholder="FaceReader 9", key=f"imp_name_{tag}")
    tool = left.text_input("Tool and version", key=f"imp_tool_{tag}")
    pipeline = right.text_input("Pipeline label", placeholder="F FaceReader", key=f"imp_pipe_{tag}")
    notes = st.text_area("Notes", height=68, key=f"imp_notes_{tag}")
    store_failures = st.checkbox("Store rows with bad values as failed predictions", disabled=checked.ok,
                                 key=f"imp_fail_{tag}")
    replace = st.checkbox("Replace predictions imported earlier under this id", key=f"imp_replace_{tag}")
    if st.button("Import predictions", type="primary", disabled=not model_id):
        try:
            with friendly_writes():
                result = pi.import_predictions(
                    factory, study_id, model_id.strip(), file_name, data, mapping=mapping, name=name or None,
                    pipeline=pipeline, tool=tool, notes=notes, store_failures=store_failures, replace=replace,
                    actor=role(),
                )
        except pi.ImportRejected as rejected:
            st.error(plain(rejected))
        except ValueError as error:
            st.error(plain(error))
        else:
            st.session_state[IMPORT_KEY] = (
                f"{result.model_id}: {result.stored} predictions stored, {result.failed} as failures"
                + (f"; rows not stored: {result.not_stored_rows}" if result.not_stored_rows else "")
            )
            st.session_state[IMPORT_ROUND_KEY] += 1  # a second click cannot import the file again
            st.rerun()


def card_section() -> None:
    st.write("A model without code: a model card (TOML or JSON: labels, input, normalisation, crop, "
             "output layout) plus its ONNX or TorchScript file.")
    card_file = st.file_uploader("Model card", type=["toml", "json"], key="card_file")
    model_file = st.file_uploader("Model file", type=["onnx", "pt", "pth", "ts"], key="card_model")
    replace = st.checkbox("Replace a card model with the same id", key="card_replace")
    if st.button("Register model", disabled=not (card_file and model_file)):
        try:
            with friendly_writes(), factory.begin() as session:
                spec = catalog.register_card(session, card_file.getvalue(),
                                             model_file.getvalue(), replace=replace, actor=role())
        except (ValueError, checkpoints.CheckpointError) as error:
            st.error(plain(error))
        else:  # rerun so the Models and Run tabs, built earlier in this run, list the new model
            st.session_state[CARD_KEY] = f"Registered {spec.name} ({spec.id}); run it in the Run tab."
            st.rerun()
    if CARD_KEY in st.session_state:
        st.success(plain(st.session_state.pop(CARD_KEY)))


counts = prediction_counts(factory, study_id) if study_id else None
models = overview(counts)
if not can(Action.RUN_MODELS):  # reviewers: the tables only, no run, import or register widgets
    comparison_section()
    status_section(models)
    st.stop()
zoo, run, imported, cards = st.tabs(["Models", "Run", "Import predictions", "Add a model"])
with zoo:
    comparison_section()
    status_section(models)
with run:
    if study_id is None:
        st.info("Create or pick a study on the Home page to run models.")
    else:
        st.text_input("Your name (shown to coauthors with the jobs you queue)", key=WHO_KEY)
        st.subheader("Face stage")
        detector, rule = face_options()
        face_stage_section(detector, rule)
        st.divider()
        run_section(models, detector, rule)
        st.divider()
        st.subheader("Jobs")
        if QUEUED_KEY in st.session_state:
            st.success(plain(st.session_state.pop(QUEUED_KEY)))
        if not ensure_in_process_worker(factory):
            st.caption("This server runs no worker: jobs wait for `python -m core worker` on a worker host.")
        jobs_panel(factory, study_id)
        st.divider()
        failures_section(counts)
with imported:
    if study_id is None:
        st.info("Create or pick a study on the Home page first.")
    else:
        import_section()
with cards:
    card_section()
