"""Study-level queries shared by every page and the command line."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access import Action, Role, require
from db.models import Rating, RatingBatch, Stimulus, Study, analysed_batches


def list_studies(session: Session) -> list[Study]:
    """All studies, oldest first."""
    return list(session.scalars(select(Study).order_by(Study.id)))


def get_or_create_study(session: Session, name: str, *, actor: Role, **fields: object) -> Study:
    """The study called ``name``, created with ``fields`` if it does not exist yet."""
    require(actor, Action.CREATE_STUDY)
    study = session.scalar(select(Study).where(Study.name == name))
    if study is None:
        study = Study(name=name, **fields)
        session.add(study)
        session.flush()
    return study


def study_counts(session: Session, study_id: int) -> dict[str, int]:
    """Numbers shown on the home page: stimuli, active batches, ratings and raters."""
    active = analysed_batches(study_id)
    ratings = select(Rating).join(RatingBatch).where(active).subquery()
    return {
        "stimuli": session.scalar(
            select(func.count()).select_from(Stimulus).where(Stimulus.study_id == study_id)
        )
        or 0,
        "batches": session.scalar(select(func.count()).select_from(RatingBatch).where(active))
        or 0,
        "ratings": session.scalar(select(func.count()).select_from(ratings)) or 0,
        "raters": session.scalar(select(func.count(func.distinct(ratings.c.rater)))) or 0,
    }
