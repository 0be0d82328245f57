"""Seed a study straight into the database for the analysis page tests and the page benchmark.

Simulated, seeded data (no real ratings): each stimulus has an intended emotion; raters pick
it with probability ``rater_accuracy`` and a random label otherwise; valence/arousal are a
per-emotion position plus noise. Models are written as Prediction rows the way the inference
runner stores them (probabilities keyed by canonical label); the last model of three or more
has seven classes (no contempt) so the 7-class handling is exercised.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from core.ratings.labels import CANONICAL
from db.models import Prediction, Rating, RatingBatch, Stimulus, StimulusAttribute, Study

POSITIONS = {
    "neutral": (0.0, -0.2), "happiness": (0.7, 0.4), "sadness": (-0.6, -0.4), "surprise": (0.2, 0.7),
    "fear": (-0.6, 0.7), "disgust": (-0.6, 0.3), "anger": (-0.6, 0.6), "contempt": (-0.4, 0.1),
}
THUMBNAIL = b"\x89PNG\r\n\x1a\n"  # never decoded by the analysis pages


@dataclass(frozen=True)
class Seeded:
    study_id: int
    model_ids: tuple[str, ...]
    n_ratings: int


def _stimuli(session: Session, study_id: int, n: int, rng: np.random.Generator) -> tuple[list[int], list[str], list[str]]:
    emotions = [CANONICAL[i % len(CANONICAL)] for i in range(n)]
    rows = [
        {
            "study_id": study_id, "path": f"set/{emotion}_{i:04d}.png",
            "sha256": hashlib.sha256(f"{study_id}-{i}".encode()).hexdigest(), "media_type": "image/png",
            "width": 64, "height": 64, "thumbnail": THUMBNAIL, "intended_emotion": emotion, "precropped": True,
        }
        for i, emotion in enumerate(emotions)
    ]
    session.execute(insert(Stimulus), rows)
    stimuli = session.query(Stimulus.id, Stimulus.sha256).filter_by(study_id=study_id).order_by(Stimulus.id).all()
    ids, shas = [s.id for s in stimuli], [s.sha256 for s in stimuli]
    session.execute(
        insert(StimulusAttribute),
        [{"stimulus_id": sid, "key": "poser_gender", "value": ("female", "male")[int(rng.integers(2))]} for sid in ids],
    )
    return ids, shas, emotions


def _ratings(session, study_id, ids, emotions, n_raters, rater_accuracy, rng) -> int:
    halves = [range(0, n_raters // 2 or 1), range(n_raters // 2 or 1, n_raters)]
    total = 0
    for number, raters in enumerate(halves, start=1):
        if not len(raters):
            continue
        batch = RatingBatch(study_id=study_id, file_name=f"ratings_part{number}.csv", sha256=f"{number:064d}",
                            layout="long", n_rows=len(raters) * len(ids))
        session.add(batch)
        session.flush()
        rows = []
        for r in raters:
            for sid, emotion in zip(ids, emotions):
                label = emotion if rng.random() < rater_accuracy else CANONICAL[int(rng.integers(len(CANONICAL)))]
                v, a = POSITIONS[emotion]
                rows.append({
                    "batch_id": batch.id, "stimulus_id": sid, "rater": f"R{r + 1:02d}", "emotion": label,
                    "emotion_raw": label, "valence": float(np.clip(v + rng.normal(0, 0.25), -1, 1)),
                    "arousal": float(np.clip(a + rng.normal(0, 0.25), -1, 1)),
                })
        session.execute(insert(Rating), rows)
        total += len(rows)
    return total


def _predictions(session, shas, emotions, n_models, rng) -> tuple[str, ...]:
    model_ids = tuple(f"sim-model-{k + 1}" for k in range(n_models))
    for k, model_id in enumerate(model_ids):
        labels = CANONICAL[:7] if n_models >= 3 and k == n_models - 1 else CANONICAL
        rows = []
        for sha, emotion in zip(shas, emotions):
            logits = rng.normal(0, 1, len(labels)) + np.array([2.5 if l == emotion else 0.0 for l in labels])
            probs = np.exp(logits) / np.exp(logits).sum()
            v, a = POSITIONS[emotion]
            rows.append({
                "stimulus_sha256": sha, "model_id": model_id, "checkpoint_sha256": "0" * 64,
                "preprocessing": "v1", "detector": "precropped", "status": "ok",
                "label": labels[int(probs.argmax())], "probs": dict(zip(labels, probs.round(6).tolist())),
                "valence": float(np.clip(v + rng.normal(0, 0.3), -1, 1)),
                "arousal": float(np.clip(a + rng.normal(0, 0.3), -1, 1)),
            })
        session.execute(insert(Prediction), rows)
    return model_ids


def seed_study(
    factory: sessionmaker[Session],
    name: str,
    *,
    n_stimuli: int = 24,
    n_raters: int = 6,
    n_models: int = 0,
    rater_accuracy: float = 0.7,
    seed: int = 0,
) -> Seeded:
    """Create a study with simulated ratings (two batches) and optional model predictions."""
    rng = np.random.default_rng(seed)
    with factory.begin() as session:
        study = Study(name=name, description="simulated for tests")
        session.add(study)
        session.flush()
        ids, shas, emotions = _stimuli(session, study.id, n_stimuli, rng)
        n_ratings = _ratings(session, study.id, ids, emotions, n_raters, rater_accuracy, rng)
        model_ids = _predictions(session, shas, emotions, n_models, rng) if n_models else ()
        return Seeded(study.id, model_ids, n_ratings)
