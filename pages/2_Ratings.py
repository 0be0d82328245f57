"""Ratings: upload wizard (preview, columns, scales, label codes, validation, confirm) and batches."""

import pandas as pd
import streamlit as st

from core.access import Action
from core.io.storage import sha256_bytes
from core.io.tabular import TableError, read_table
from core.ratings.labels import CANONICAL
from core.ratings.layouts import (
    DIMENSIONS,
    ERROR_KINDS,
    LAYOUTS,
    ROLES,
    ColumnMapping,
    MappingError,
    PreparedRatings,
    cell_columns,
    detect_mapping,
    dimensions_present,
    label_summary,
    numeric_values,
    parse_label_codes,
    prepare_ratings,
    rejected_rows_table,
    to_csv_bytes,
)
from core.ratings.repeats import DEFAULT_POLICY, REPEAT_POLICIES, RepeatsRefused
from core.ratings.scales import PRESETS, Scale, scale_change, suggest_scale
from db import ratings as rating_db
from db.repeats import repeats_for_import
from db.stimuli import AmbiguousKeyError, key_mode_suggestion, set_key_mode
from ui.chrome import can, page_setup, role
from ui.db_errors import friendly_writes
from ui.text import code, plain

PREVIEW_ROWS = 20
NONE = "(none)"
CUSTOM = "custom"
ROUND_KEY = "ratings_upload_round"  # bumped after an import to empty the uploader
RESULT_KEY = "ratings_last_import"
BY_KEY = "ratings_uploaded_by"
LAST_BY_KEY = "ratings_last_uploader"  # kept for the next file (the widget's own state is not)
# Plain session keys survive page changes; Streamlit drops the state of widgets not on the page.
FILE_KEY = "ratings_wizard_file"
CHOICES_KEY = "ratings_wizard_choices"

factory, study_id = page_setup("Ratings")


def wizard() -> None:
    round_ = st.session_state.setdefault(ROUND_KEY, 0)
    uploader_key = f"rating_file_{round_}"
    came_back = uploader_key not in st.session_state  # first render since the page was opened
    upload = st.file_uploader(
        "Rating file (CSV, TSV or XLSX; UTF-8 with or without BOM, `;` and decimal commas fine)",
        type=["csv", "tsv", "txt", "xlsx"], key=uploader_key,
    )
    show_last_import()
    file = current_file(upload, came_back)
    if file is None:
        return
    key = f"{sha256_bytes(file[1])[:12]}:"  # widgets start afresh for every new file
    restore_choices(key)
    try:
        wizard_steps(*file, key)
    finally:
        remember_choices(key)


def current_file(upload, came_back: bool) -> tuple[str, bytes] | None:
    """The uploaded file, or the one uploaded before the user left the page (same session)."""
    if upload is not None:
        st.session_state[FILE_KEY] = (upload.name, upload.getvalue())
    elif not came_back:  # the user removed the file from the uploader
        forget_file()
    file = st.session_state.get(FILE_KEY)
    if file is not None and upload is None:
        st.info(f"Continuing with {plain(file[0])}, uploaded earlier in this session, and your choices.")
        st.button("Discard this file", on_click=forget_file, key="ratings_discard_file")
    return file


def forget_file() -> None:
    st.session_state.pop(FILE_KEY, None)
    st.session_state.pop(CHOICES_KEY, None)


def restore_choices(key: str) -> None:
    """Put back the wizard's widget values that a page change cleared."""
    for name, value in st.session_state.get(CHOICES_KEY, {}).items():
        if name.startswith(key) and name not in st.session_state:
            st.session_state[name] = value


def remember_choices(key: str) -> None:
    st.session_state[CHOICES_KEY] = {
        name: st.session_state[name] for name in st.session_state if str(name).startswith(key)
    }


def wizard_steps(file_name: str, data: bytes, key: str) -> None:
    try:
        frame = read_table(file_name, data)
        with factory() as session:
            index = rating_db.stimulus_index(session, study_id)
            duplicate = rating_db.find_duplicate_file(session, study_id, sha256_bytes(data))
            earlier_scales = rating_db.declared_scales(session, study_id)
    except (TableError, AmbiguousKeyError) as error:
        st.error(plain(error))
        return
    if not index.keys:
        st.warning("This study has no stimuli yet: import the images on the Stimuli page first.")

    st.subheader("1 · Preview")
    st.caption(f"{plain(file_name)}: {len(frame)} data rows, {len(frame.columns)} columns.")
    st.dataframe(frame.head(PREVIEW_ROWS), hide_index=True)
    allow_duplicate = duplicate_warning(duplicate, key)

    st.subheader("2 · Columns")
    codes_text = st.session_state.get(f"{key}codes", "")
    codes = parse_codes(codes_text, show=False)
    mapping = mapping_editor(frame, index, codes, key)

    st.subheader("3 · Scales")
    scales = scale_editor(frame, mapping, index, key, earlier_scales)
    scales_confirmed = confirm_scale_changes(scales, earlier_scales, key)

    st.subheader("4 · Emotion labels")
    codes = label_editor(frame, mapping, index, key)

    st.subheader("5 · Validation")
    repeats = st.selectbox(
        "A rater rating a stimulus again (in this file or an earlier batch)",
        list(REPEAT_POLICIES), format_func=lambda name: REPEAT_POLICIES[name],
        index=list(REPEAT_POLICIES).index(DEFAULT_POLICY), key=f"{key}_repeats",
        help="Every rating is stored; this choice decides how analyses resolve repeats.",
    )
    try:
        prepared = prepare_ratings(frame, mapping, index=index, scales=scales, codes=codes,
                                   repeats=repeats)
    except MappingError as error:
        st.warning("Fix the choices above before validating:\n\n" + "\n".join(
            f"- {plain(problem)}" for problem in error.problems
        ))
        return
    validation_report(frame, prepared)
    show_repeats(prepared, repeats)
    offer_key_mode(prepared)

    st.subheader("6 · Confirm")
    if not scales_confirmed:
        st.info("Confirm the scale that differs from the study's earlier batches (step 3) to import.")
        return
    confirm(file_name, data, frame, prepared, allow_duplicate)


def offer_key_mode(prepared: PreparedRatings) -> None:
    """Survey tools write ``neutral_001`` for ``neutral_001.jpg``: offer the naming that matches."""
    known, unknown = prepared.stimulus_ids()
    if not unknown:
        return
    with factory() as session:
        suggestion = key_mode_suggestion(session, study_id, known, unknown)
    if suggestion is None:
        return
    st.info(
        f"All {len(suggestion.matches):,} unknown stimulus ids match exactly one stimulus when the "
        f"study names stimuli by {plain(suggestion.describe())}:"
    )
    st.dataframe(pd.DataFrame(list(suggestion.matches.items()), columns=["id in the file", "stimulus"]),
                 hide_index=True, height=min(35 * (len(suggestion.matches) + 1) + 3, 250))
    if not can(Action.CHANGE_STUDY_SETTINGS):
        st.caption("Ask the study owner to switch how this study names stimuli (Stimuli page, "
                   "Study settings), then upload the file again.")
        return
    if st.button(f"Match stimulus ids by {plain(suggestion.describe())} for this study",
                 key="ratings_key_mode_switch", type="primary"):
        try:
            with friendly_writes(), factory.begin() as session:
                set_key_mode(session, study_id, suggestion.mode, suggestion.case_insensitive,
                             actor=role())
        except ValueError as error:
            st.error(plain(error))
            return
        st.rerun()


def duplicate_warning(duplicate, key: str) -> bool:
    if duplicate is None:
        return False
    st.warning(plain(rating_db.DuplicateFileError(duplicate)))
    return st.checkbox("Import this file again anyway", key=f"{key}allow_duplicate")


def parse_codes(text: str, show: bool = True) -> dict[str, str]:
    try:
        return parse_label_codes(text)
    except ValueError as error:
        if show:
            st.error(plain(error))
        return {}


def mapping_editor(frame: pd.DataFrame, index, codes: dict[str, str], key: str) -> ColumnMapping:
    detected = detect_mapping(frame, index, codes)
    layouts = list(LAYOUTS)
    layout = st.selectbox(
        "Layout (detected; change it if wrong)", layouts, index=layouts.index(detected.layout),
        format_func=LAYOUTS.get, key=f"{key}layout",
    )
    detected = detect_mapping(frame, index, codes, layout=layout)
    options = [NONE, *frame.columns]
    roles = ROLES if layout == "long" else [next(iter(detected.columns))]
    chosen = {}
    for column, role in zip(st.columns(len(roles)), roles):
        current = detected.columns.get(role)
        choice = column.selectbox(
            f"{plain(role)} column", options, index=options.index(current) if current else 0,
            key=f"{key}{layout}:{role}",
        )
        if choice != NONE:
            chosen[role] = choice
    mapping = ColumnMapping(layout, chosen)
    if layout == "long":
        unused = [c for c in frame.columns if c not in chosen.values()]
        if unused:
            st.caption("Columns not imported: " + plain(", ".join(unused)))
        return mapping
    mapping.ignored = st.multiselect(
        "Columns to leave out", [c for c in frame.columns if c not in chosen.values()],
        default=[c for c in detected.ignored if c not in chosen.values()],
        key=f"{key}{layout}:ignored",
    )
    if layout in ("wide_rater", "wide_stimulus"):
        dims = [NONE, *DIMENSIONS]
        dimension = st.selectbox(
            "Dimension of columns whose header names none", dims, key=f"{key}{layout}:dimension",
        )
        mapping.dimension = None if dimension == NONE else dimension
        with st.expander("How each column is read"):
            other = "stimulus" if layout == "wide_rater" else "rater"
            st.dataframe(pd.DataFrame(
                [(c, k, d or "?") for c, (k, d) in cell_columns(frame, mapping, index).items()],
                columns=["column", other, "dimension"],
            ), hide_index=True)
    return mapping


def scale_editor(frame: pd.DataFrame, mapping: ColumnMapping, index, key: str, earlier: dict) -> dict:
    try:
        values = numeric_values(frame, mapping, index)
    except KeyError:  # a mapped column vanished after a layout change; the mapping step says so
        return {}
    if not values:
        st.caption("No valence or arousal in this file: no scale to declare.")
        return {}
    scales = {}
    choices = [*PRESETS, CUSTOM]
    for dim, numbers in values.items():
        observed = (float(numbers.min()), float(numbers.max())) if len(numbers) else None
        suggestion = suggest_scale(numbers, earlier.get(dim, []))
        hint = (f"values in the file: {observed[0]:g} to {observed[1]:g}; "
                f"suggested: {suggestion.text}") if observed and suggestion else "no numbers"
        name = st.selectbox(
            f"{plain(dim)} scale ({plain(hint)})", choices, index=None, placeholder="Declare the scale",
            format_func=lambda n: PRESETS[n].label if n in PRESETS else "custom MIN..MAX",
            key=f"{key}scale:{dim}",
        )
        if name == CUSTOM:
            scales[dim] = custom_scale(dim, observed or (0.0, 1.0), key)
        elif name is not None:
            scales[dim] = PRESETS[name]
    return {dim: scale for dim, scale in scales.items() if scale is not None}


def confirm_scale_changes(scales: dict[str, Scale], earlier: dict, key: str) -> bool:
    """A scale unlike the study's earlier batches is imported only after an explicit tick."""
    confirmed = True
    for dim, scale in scales.items():
        change = scale_change(dim, scale, earlier.get(dim, []))
        if change:
            st.warning(plain(change + ". Ratings on different scales are compared only after normalising."))
            confirmed &= st.checkbox(plain(f"Yes, this batch's {dim} was rated on {scale.label}"),
                                     key=f"{key}scale_change:{dim}")
    return confirmed


def custom_scale(dim: str, observed: tuple[float, float], key: str) -> Scale | None:
    """Bounds prefilled with the observed range, for the user to widen to the true scale."""
    st.caption(f"The {plain(dim)} bounds start at the values seen in the file: set them to the ends of "
               "the scale raters used (e.g. 1 and 9), not the ends they happened to reach.")
    low_column, high_column = st.columns(2)
    low = low_column.number_input(f"{plain(dim)} minimum", value=observed[0], key=f"{key}low:{dim}")
    high = high_column.number_input(f"{plain(dim)} maximum", value=observed[1], key=f"{key}high:{dim}")
    try:
        return Scale(low, high)
    except ValueError as error:
        st.error(f"{plain(dim)}: {plain(error)}")
        return None


def label_editor(frame: pd.DataFrame, mapping: ColumnMapping, index, key: str) -> dict:
    if "emotion" not in dimensions_present(frame, mapping, index):
        st.caption("No emotion labels in this file.")
        return {}
    text = st.text_area(
        "Label codes, one per line as CODE=LABEL (e.g. `1=anger`); labels: "
        + ", ".join(CANONICAL) + " or a synonym",
        key=f"{key}codes",
    )
    codes = parse_codes(text)
    summary = label_summary(frame, mapping, codes, index)
    unknown = summary["canonical"].isna()
    if unknown.any():
        st.warning(
            "Labels not recognised: "
            + plain(", ".join(summary.loc[unknown, "raw"].head(20)))
            + ". Declare them above, or their rows will be rejected."
        )
    st.dataframe(
        summary.assign(canonical=summary["canonical"].fillna("unknown")), hide_index=True,
    )
    return codes


def validation_report(frame: pd.DataFrame, prepared: PreparedRatings) -> None:
    rejected = prepared.rejected_rows
    first, second, third = st.columns(3)
    first.metric("Rows in the file", prepared.n_file_rows)
    second.metric("Valid ratings", len(prepared.ratings))
    third.metric("Rows with problems", len(rejected))
    if prepared.ok:
        st.success("Every row is valid.")
        return
    counts = prepared.errors["kind"].map(ERROR_KINDS).value_counts()
    st.error("Problems found: " + ", ".join(f"{plain(kind)} ({n:,})" for kind, n in counts.items()))
    st.markdown(problem_examples_markdown(prepared.errors))
    st.dataframe(prepared.errors, hide_index=True)
    st.download_button(
        "Download the problem report (CSV)", to_csv_bytes(prepared.errors),
        "rating_problems.csv", "text/csv", on_click="ignore",
    )


def problem_examples_markdown(errors: pd.DataFrame) -> str:
    """One bullet per kind of problem with its first row's full message (the table cuts long
    messages off, and the message says what to do)."""
    return "\n".join(
        problem_markdown(kind, rows) for kind, rows in errors.groupby("kind", sort=False)
    )


def problem_markdown(kind: str, rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    value = str(first["value"]) or "(empty)"
    return (
        f"- **{plain(ERROR_KINDS.get(kind, kind))}** ({len(rows)} rows; e.g. row {int(first['row'])}, "
        f"column {code(first['column'])}, value {code(value)}): {plain(first['message'])}"
    )


def show_repeats(prepared: PreparedRatings, policy: str) -> None:
    with factory() as session:
        found = repeats_for_import(session, study_id, prepared)
    if found.empty:
        return
    earlier = int((found["earlier"] > 0).sum())
    st.info(f"{len(found):,} rater x stimulus pairs are rated more than once ({earlier:,} with "
            f"earlier batches). Chosen: {plain(REPEAT_POLICIES[policy])}.")
    st.dataframe(found, hide_index=True)


def confirm(file_name: str, data: bytes, frame, prepared: PreparedRatings, allow_duplicate: bool) -> None:
    uploaded_by = st.text_input(
        "Uploaded by (stored with the batch)", value=st.session_state.get(LAST_BY_KEY, ""), key=BY_KEY
    )
    if prepared.ok:
        if st.button(f"Import {len(prepared.ratings)} ratings", type="primary"):
            store(file_name, data, frame, prepared, uploaded_by, False, allow_duplicate)
        return
    st.caption(
        "An import is all-or-nothing: fix the file and upload it again, or explicitly import "
        "the valid rows only and download the rejected ones."
    )
    st.button("Import all rows", disabled=True, help="Some rows have problems.")
    if st.button(f"Import the {len(prepared.ratings)} valid ratings only and download the "
                 f"{len(prepared.rejected_rows)} rejected rows", disabled=prepared.ratings.empty):
        store(file_name, data, frame, prepared, uploaded_by, True, allow_duplicate)


def store(file_name, data, frame, prepared, uploaded_by, partial, allow_duplicate) -> None:
    try:
        with friendly_writes():
            result = rating_db.import_batch_in_chunks(
                factory, study_id, prepared, file_name=file_name, data=data,
                uploaded_by=uploaded_by, partial=partial, allow_duplicate=allow_duplicate,
                actor=role(),
            )
    except (rating_db.ImportRejected, rating_db.DuplicateFileError, RepeatsRefused) as error:
        st.error(plain(error))
        return
    rejected = rejected_rows_table(frame, prepared.errors) if result.rejected_rows else None
    st.session_state[RESULT_KEY] = (file_name, result, rejected)
    st.session_state[LAST_BY_KEY] = uploaded_by
    st.session_state[ROUND_KEY] += 1
    forget_file()
    st.rerun()


def show_last_import() -> None:
    last = st.session_state.get(RESULT_KEY)
    if last is None:
        return
    file_name, result, rejected = last
    st.success(f"{plain(file_name)}: batch #{result.batch_id:d} stored with {result.n_ratings:,} ratings.")
    if rejected is not None:
        st.download_button(
            f"Download the {len(rejected)} rejected rows (CSV)", to_csv_bytes(rejected),
            f"{file_name}.rejected.csv", "text/csv", on_click="ignore",
        )


def batch_list() -> None:
    if can(Action.PURGE_BATCHES):
        with friendly_writes(stop=False), factory.begin() as session:
            rating_db.purge_deleted(session, actor=role())
    with factory() as session:
        batches = rating_db.list_batches(session, study_id)
    live = [b for b in batches if b.deleted_at is None]
    deleted = [b for b in batches if b.deleted_at is not None and b.undo_until]
    if not batches:
        st.info("No rating batches yet.")
    for batch in live:
        batch_row(batch)
    if deleted:
        st.markdown("**Recently deleted** (restorable for a while, then removed for good)")
    for batch in deleted:
        left, right = st.columns([4, 1])
        left.write(f"#{batch.id:d} {plain(batch.file_name)}: {batch.n_ratings:,} ratings; can be restored "
                   f"until {batch.undo_until:%Y-%m-%d %H:%M} UTC")
        if can(Action.DELETE_BATCH):
            right.button("Undo delete", key=f"undo_{batch.id}", on_click=act,
                         args=(rating_db.undo_delete, batch.id))


def batch_row(batch: rating_db.BatchSummary) -> None:
    with st.container(border=True):
        info, exclude, delete = st.columns([4, 1, 1])
        info.markdown(
            f"**#{batch.id:d} {plain(batch.file_name)}** · {plain(batch.layout)} · {batch.n_ratings:,} ratings, "
            f"{batch.n_raters:,} raters, {batch.n_stimuli:,} stimuli"
            + (f" · {batch.n_rejected:,} rows rejected" if batch.n_rejected else "")
        )
        info.caption(
            f"uploaded {batch.uploaded_at:%Y-%m-%d %H:%M} UTC"
            + (f" by {plain(batch.uploaded_by)}" if batch.uploaded_by else "")
        )
        if can(Action.EXCLUDE_BATCH):
            exclude.toggle(
                "Excluded", value=batch.excluded, key=f"exclude_{batch.id}", on_change=toggle,
                args=(batch.id,), help="Excluded batches are left out of every analysis.",
            )
        elif batch.excluded:
            exclude.caption("excluded")
        if can(Action.DELETE_BATCH):
            delete.button("Delete", key=f"delete_{batch.id}", on_click=act,
                          args=(rating_db.delete_batch, batch.id))
        with st.expander("Provenance"):
            facts = rating_db.batches_frame([batch]).T.astype(str).set_axis(["value"], axis=1)
            st.dataframe(facts, height="content")
            st.caption("How the file was read: column mapping, declared scales, label codes.")
            st.json({"mapping": batch.mapping, "scales": batch.scales,
                     "label_map": batch.label_map}, expanded=False)
            st.download_button(
                "Download the original file", lambda: original(batch.id), batch.file_name,
                key=f"original_{batch.id}", on_click="ignore",
            )


def act(action, batch_id: int) -> None:
    try:
        with friendly_writes(stop=False), factory.begin() as session:
            action(session, batch_id, actor=role())
    except (rating_db.UndoExpired, rating_db.DuplicateFileError, LookupError) as error:
        st.session_state["ratings_batch_error"] = str(error)


def toggle(batch_id: int) -> None:
    with friendly_writes(stop=False), factory.begin() as session:
        rating_db.set_excluded(session, batch_id, st.session_state[f"exclude_{batch_id}"], actor=role())


def original(batch_id: int) -> bytes:
    with factory() as session:
        return rating_db.batch_file(session, batch_id)


if can(Action.UPLOAD_RATINGS):
    upload_tab, batches_tab = st.tabs(["Upload ratings", "Batches"])
    with upload_tab:
        wizard()
else:
    batches_tab = st.container()
with batches_tab:
    if "ratings_batch_error" in st.session_state:
        st.error(plain(st.session_state.pop("ratings_batch_error")))
    batch_list()
