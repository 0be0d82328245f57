"""Stimulus queries: key lookups, gallery search, detail, attributes and rating coverage."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from core.access import Action, Role, require
from core.ratings.labels import CANONICAL
from core.ratings.stimulus_keys import KEY_MODES, KeySuggestion, stimulus_key, suggest_key_mode
from db.models import (
    Prediction, Rating, RatingBatch, Stimulus, StimulusAttribute, Study, analysed_batches,
    visible_batches,
)

NO_INTENDED = "(none)"  # filter value for stimuli without an intended emotion


class AmbiguousKeyError(ValueError):
    """Two or more stimuli share one id under the study's key mode."""

    def __init__(self, conflicts: Mapping[str, list[str]], mode: str) -> None:
        self.conflicts = dict(conflicts)
        shown = list(conflicts.items())[:10]
        listed = "; ".join(f"{key!r}: {', '.join(paths)}" for key, paths in shown)
        more = f" (and {len(conflicts) - 10} more)" if len(conflicts) > 10 else ""
        super().__init__(
            f"stimulus ids are ambiguous under the key mode {KEY_MODES[mode]!r}: {listed}{more}. "
            "Switch the study's stimulus id to 'relative path' (Stimuli page) or rename the files."
        )


def get_study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise LookupError(f"study {study_id} does not exist")
    return study


def create_study(
    session: Session, name: str, description: str = "", *, stimulus_key_mode: str = "name",
    case_insensitive: bool = True,
    actor: Role,
) -> Study:
    """A new study; raises ValueError for an empty or already used name or an unknown mode."""
    require(actor, Action.CREATE_STUDY)
    name = name.strip()
    if not name:
        raise ValueError("Give the study a name.")
    if stimulus_key_mode not in KEY_MODES:
        raise ValueError(f"unknown stimulus key mode {stimulus_key_mode!r}")
    if session.scalar(select(Study.id).where(Study.name == name)) is not None:
        raise ValueError(f"A study named {name!r} already exists; pick another name.")
    study = Study(
        name=name, description=description.strip(), stimulus_key=stimulus_key_mode,
        key_case_insensitive=case_insensitive,
    )
    session.add(study)
    session.flush()
    return study


def stimulus_rows(session: Session, study_id: int) -> list[tuple[int, str, str]]:
    """(id, path, sha256) of every stimulus of the study."""
    query = select(Stimulus.id, Stimulus.path, Stimulus.sha256).where(Stimulus.study_id == study_id)
    return [tuple(row) for row in session.execute(query)]


def key_conflicts(
    session: Session, study_id: int, mode: str, case_insensitive: bool
) -> dict[str, list[str]]:
    """Keys that more than one stimulus would share under ``mode`` -> their paths."""
    groups: dict[str, list[str]] = defaultdict(list)
    for _, path, _ in stimulus_rows(session, study_id):
        groups[stimulus_key(path, mode, case_insensitive)].append(path)
    return {key: sorted(paths) for key, paths in groups.items() if len(paths) > 1}


def key_index(session: Session, study_id: int) -> dict[str, int]:
    """Stimulus id as rating files write it (study's key mode) -> stimulus row id.

    Look raw ids up with ``core.workflows.stimuli.lookup_key(raw, mode, case_insensitive)``.
    Raises :class:`AmbiguousKeyError` when two stimuli share a key.
    """
    study = get_study(session, study_id)
    mode, folded = study.stimulus_key, study.key_case_insensitive
    index: dict[str, int] = {}
    for stimulus_id, path, _ in stimulus_rows(session, study_id):
        index.setdefault(stimulus_key(path, mode, folded), stimulus_id)
    conflicts = key_conflicts(session, study_id, mode, folded)
    if conflicts:
        raise AmbiguousKeyError(conflicts, mode)
    return index


def set_key_mode(session: Session, study_id: int, mode: str, case_insensitive: bool, *, actor: Role) -> None:
    """Change how rating files name stimuli; refuses a mode that makes ids ambiguous."""
    require(actor, Action.CHANGE_STUDY_SETTINGS)
    if mode not in KEY_MODES:
        raise ValueError(f"unknown stimulus key mode {mode!r}; use one of {sorted(KEY_MODES)}")
    conflicts = key_conflicts(session, study_id, mode, case_insensitive)
    if conflicts:
        raise AmbiguousKeyError(conflicts, mode)
    study = get_study(session, study_id)
    study.stimulus_key, study.key_case_insensitive = mode, case_insensitive


def set_reviewers_see_faces(session: Session, study_id: int, allowed: bool, *, actor: Role) -> None:
    """Let reviewers see the original face images of a study (off: blurred thumbnails only)."""
    require(actor, Action.CHANGE_STUDY_SETTINGS)
    get_study(session, study_id).reviewers_see_faces = allowed


def key_mode_suggestion(
    session: Session, study_id: int, ids: Iterable[str], unknown: Iterable[str]
) -> KeySuggestion | None:
    """A key mode under which every id of a rating file names one of the study's stimuli."""
    study = get_study(session, study_id)
    paths = [path for _, path, _ in stimulus_rows(session, study_id)]
    return suggest_key_mode(paths, ids, unknown, study.stimulus_key, study.key_case_insensitive)


def search_stimuli(
    session: Session,
    study_id: int,
    text: str = "",
    intended: Sequence[str] | None = None,
    *,
    offset: int = 0,
    limit: int = 48,
) -> tuple[list[Stimulus], int]:
    """One gallery page of stimuli ordered by path, and the total number matching.

    ``text`` matches (case-insensitively) the path, the intended emotion or any attribute key or
    value; ``intended`` keeps stimuli with one of these canonical labels (``NO_INTENDED``: none).
    """
    conditions = [Stimulus.study_id == study_id]
    if text.strip():
        pattern = "%" + _escape_like(text.strip()) + "%"
        attribute_hit = (
            select(StimulusAttribute.id)
            .where(StimulusAttribute.stimulus_id == Stimulus.id)
            .where(
                or_(
                    StimulusAttribute.value.ilike(pattern, escape="\\"),
                    StimulusAttribute.key.ilike(pattern, escape="\\"),
                )
            )
            .exists()
        )
        conditions.append(
            or_(
                Stimulus.path.ilike(pattern, escape="\\"),
                Stimulus.intended_emotion.ilike(pattern, escape="\\"),
                attribute_hit,
            )
        )
    if intended:
        labels = [label for label in intended if label != NO_INTENDED]
        wanted = [Stimulus.intended_emotion.in_(labels)] if labels else []
        if NO_INTENDED in intended:
            wanted.append(Stimulus.intended_emotion.is_(None))
        conditions.append(or_(*wanted))
    total = session.scalar(select(func.count()).select_from(Stimulus).where(*conditions)) or 0
    page = session.scalars(
        select(Stimulus).where(*conditions).order_by(Stimulus.path).offset(offset).limit(limit)
    )
    return list(page), total


def get_stimulus(session: Session, stimulus_id: int) -> Stimulus | None:
    """One stimulus with its attributes loaded (for the detail view)."""
    return session.scalar(
        select(Stimulus)
        .options(selectinload(Stimulus.attributes))
        .where(Stimulus.id == stimulus_id)
    )


def upsert_attributes(session: Session, values: Mapping[int, Mapping[str, str]], *, actor: Role) -> int:
    """Set attributes (stimulus id -> {key: value}), inserting or overwriting; returns changes."""
    require(actor, Action.UPLOAD_STIMULI)
    wanted = [stimulus_id for stimulus_id, items in values.items() if items]
    existing: dict[tuple[int, str], StimulusAttribute] = {}
    for start in range(0, len(wanted), 500):  # stay under SQLite's bound-parameter limit
        chunk = wanted[start : start + 500]
        for attribute in session.scalars(
            select(StimulusAttribute).where(StimulusAttribute.stimulus_id.in_(chunk))
        ):
            existing[(attribute.stimulus_id, attribute.key)] = attribute
    changed = 0
    for stimulus_id in wanted:
        for key, value in values[stimulus_id].items():
            current = existing.get((stimulus_id, key))
            if current is None:
                session.add(StimulusAttribute(stimulus_id=stimulus_id, key=key, value=value))
            elif current.value == value:
                continue
            else:
                current.value = value
            changed += 1
    session.flush()
    return changed


def set_intended(session: Session, stimulus_id: int, label: str | None, *, actor: Role) -> None:
    """Set (or clear with None) the canonical intended emotion of one stimulus."""
    require(actor, Action.UPLOAD_STIMULI)
    if label is not None and label not in CANONICAL:
        raise ValueError(f"{label!r} is not one of the canonical emotions {CANONICAL}")
    stimulus = session.get(Stimulus, stimulus_id)
    if stimulus is None:
        raise LookupError(f"stimulus {stimulus_id} does not exist")
    stimulus.intended_emotion = label


def attribute_keys(session: Session, study_id: int) -> list[str]:
    """Names of the metadata attributes used in the study."""
    query = (
        select(StimulusAttribute.key)
        .join(Stimulus)
        .where(Stimulus.study_id == study_id)
        .distinct()
        .order_by(StimulusAttribute.key)
    )
    return list(session.scalars(query))


def intended_counts(session: Session, study_id: int) -> dict[str | None, int]:
    """Number of stimuli per intended emotion (None: not posed / not declared)."""
    query = (
        select(Stimulus.intended_emotion, func.count())
        .where(Stimulus.study_id == study_id)
        .group_by(Stimulus.intended_emotion)
    )
    return {label: count for label, count in session.execute(query)}


def raters_per_stimulus(session: Session, study_id: int) -> list[tuple[int, str, int]]:
    """(stimulus id, path, distinct raters in active batches) for every stimulus, zeros included."""
    active = (
        select(Rating.stimulus_id, Rating.rater)
        .join(RatingBatch, Rating.batch_id == RatingBatch.id)
        .where(analysed_batches(study_id))
        .distinct()
        .subquery()
    )
    query = (
        select(Stimulus.id, Stimulus.path, func.count(active.c.rater))
        .outerjoin(active, active.c.stimulus_id == Stimulus.id)
        .where(Stimulus.study_id == study_id)
        .group_by(Stimulus.id, Stimulus.path)
        .order_by(Stimulus.path)
    )
    return [tuple(row) for row in session.execute(query)]


def rater_count_distribution(session: Session, study_id: int) -> dict[int, int]:
    """Number of raters -> number of stimuli rated by that many raters."""
    counts = Counter(n for _, _, n in raters_per_stimulus(session, study_id))
    return dict(sorted(counts.items()))


def coverage_gaps(session: Session, study_id: int, min_raters: int) -> list[tuple[str, int]]:
    """(path, raters) of stimuli rated by fewer than ``min_raters`` raters, fewest first."""
    rows = [(path, n) for _, path, n in raters_per_stimulus(session, study_id) if n < min_raters]
    return sorted(rows, key=lambda row: (row[1], row[0]))


def setup_progress(session: Session, study_id: int) -> dict[str, int]:
    """What the home page checklist needs: stimuli, described stimuli, batches, models run."""
    stimuli = select(Stimulus.id).where(Stimulus.study_id == study_id)
    has_attribute = select(StimulusAttribute.id).where(
        StimulusAttribute.stimulus_id == Stimulus.id
    ).exists()
    described = select(func.count()).select_from(Stimulus).where(
        Stimulus.study_id == study_id,
        or_(Stimulus.intended_emotion.is_not(None), has_attribute),
    )
    batches = select(func.count()).select_from(RatingBatch).where(
        RatingBatch.study_id == study_id, RatingBatch.deleted_at.is_(None), visible_batches()
    )
    models = select(func.count(func.distinct(Prediction.model_id))).where(
        Prediction.stimulus_sha256.in_(
            select(Stimulus.sha256).where(Stimulus.study_id == study_id)
        )
    )
    return {
        "stimuli": session.scalar(select(func.count()).select_from(stimuli.subquery())) or 0,
        "described": session.scalar(described) or 0,
        "batches": session.scalar(batches) or 0,
        "models": session.scalar(models) or 0,
    }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
