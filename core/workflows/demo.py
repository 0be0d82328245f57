"""A small demo study, clearly labelled synthetic, so every page has something to show.

Nothing here is real data: the stimuli are drawn cartoons (plus one public-domain photo), the
raters and their ratings are simulated from a seeded generator, and the "models" are three
named fakes whose predictions are simulated too (``demo-model-a`` .. ``-c``; ``-c`` has seven
classes, no contempt, like several published models). Everything is imported through the real
import paths (stimuli, metadata, one long and one wide rating file), so the demo also exercises
them. Loading twice returns the existing study.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Action, Role, require
from core.faces.synthetic import PHOTO_NAME, demo_images
from core.io.tabular import read_table
from core.ratings.labels import CANONICAL
from core.ratings.layouts import detect_mapping, parse_label_codes, prepare_ratings
from core.ratings.scales import PRESETS, Scale, denormalise
from core.workflows.stimuli import import_files, import_metadata
from db.models import Prediction, RegisteredModel, Stimulus, Study
from db.ratings import import_batch, stimulus_index

DEMO_NAME = "Demo (synthetic)"
DEMO_DESCRIPTION = (
    "SYNTHETIC demo: cartoon faces, simulated raters and simulated model outputs. "
    "Not real data; for trying out the dashboard only."
)
DEMO_BY = "demo loader (synthetic)"
N_CARTOONS = 24
SEED = 20240601
SYNTHETIC = "synthetic"

# Rough circumplex positions (valence, arousal in [-1, 1]) used to simulate ratings; chosen by
# hand for the demo, not taken from any data set.
PROTOTYPES: dict[str, tuple[float, float]] = {
    "neutral": (0.0, -0.3), "happiness": (0.75, 0.45), "sadness": (-0.6, -0.4),
    "surprise": (0.2, 0.75), "fear": (-0.65, 0.7), "disgust": (-0.6, 0.3),
    "anger": (-0.6, 0.65), "contempt": (-0.4, 0.1),
}
# Korean labels in the wide file show the synonym mapping; codes 1-8 show the code map.
KOREAN = {
    "neutral": "중립", "happiness": "행복", "sadness": "슬픔", "surprise": "놀람",
    "fear": "공포", "disgust": "혐오", "anger": "분노", "contempt": "경멸",
}
WIDE_CODES = {str(i + 1): label for i, label in enumerate(CANONICAL)}


@dataclass(frozen=True)
class DemoModel:
    model_id: str
    name: str
    accuracy: float  # chance that the simulated top label is the intended emotion
    noise: float  # SD of the V/A error (normalised units)
    labels: tuple[str, ...]


DEMO_MODELS = (
    DemoModel("demo-model-a", "Demo model A (synthetic, 8 classes)", 0.8, 0.15, CANONICAL),
    DemoModel("demo-model-b", "Demo model B (synthetic, 8 classes)", 0.6, 0.3, CANONICAL),
    DemoModel("demo-model-c", "Demo model C (synthetic, 7 classes)", 0.7, 0.2, CANONICAL[:7]),
)


def load_demo(session: Session, *, actor: Role) -> int:
    """Create the synthetic demo study (or return the existing one); returns its id."""
    require(actor, Action.LOAD_DEMO)
    existing = session.scalar(select(Study).where(Study.name == DEMO_NAME))
    if existing is not None:
        return existing.id
    study = Study(name=DEMO_NAME, description=DEMO_DESCRIPTION, is_demo=True, stimulus_key="name")
    session.add(study)
    session.flush()
    images = demo_images(N_CARTOONS, seed=0)
    cartoons = [(name, data) for name, data in images if name != PHOTO_NAME]
    photos = [(name, data) for name, data in images if name == PHOTO_NAME]
    import_files(session, study.id, cartoons, precropped=True, actor=actor)
    import_files(session, study.id, photos, actor=actor)
    stimuli = _stimuli(session, study.id)
    _import_metadata(session, study.id, stimuli, actor=actor)
    rng = np.random.default_rng(SEED)
    truth = {path: _emotion_of(path) for path in stimuli}
    _import_ratings(session, study.id, truth, rng, actor=actor)
    _add_predictions(session, study.id, stimuli, truth, rng)
    return study.id


def _stimuli(session: Session, study_id: int) -> dict[str, str]:
    """Stimulus path -> sha256."""
    rows = session.execute(
        select(Stimulus.path, Stimulus.sha256).where(Stimulus.study_id == study_id)
    )
    return dict(sorted((path, sha) for path, sha in rows))


def _emotion_of(path: str) -> str:
    """Cartoon files are named after the expression drawn; the photo is smiling."""
    stem = path.rsplit("/", 1)[-1].split("_", 1)[0]
    return stem if stem in CANONICAL else "happiness"


def _file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _import_metadata(session: Session, study_id: int, stimuli: dict[str, str], *, actor: Role) -> None:
    rows = []
    for number, path in enumerate(stimuli):
        posed = path != PHOTO_NAME
        rows.append({
            "stimulus": _file_name(path),
            "intended_emotion": _emotion_of(path) if posed else "",
            "poser_gender": ("female", "male")[number % 2],
            "age_group": ("young", "middle", "older")[number % 3],
            "stimulus_set": "demo cartoons (synthetic)" if posed else "astronaut photo",
        })
    data = pd.DataFrame(rows).to_csv(index=False).encode("utf-8")
    import_metadata(session, study_id, "demo_metadata.csv", data, actor=actor)


def _simulate(
    truth: dict[str, str], raters: list[str], rng: np.random.Generator
) -> pd.DataFrame:
    """One row per rater x stimulus: label (mostly the intended one) and V/A in [-1, 1]."""
    records = []
    for rater in raters:
        bias = rng.normal(0, 0.1, size=2)
        for path, emotion in truth.items():
            label = emotion if rng.random() < 0.75 else str(rng.choice(CANONICAL))
            centre = np.array(PROTOTYPES[emotion]) + bias
            valence, arousal = np.clip(centre + rng.normal(0, 0.2, size=2), -1, 1)
            records.append((rater, _file_name(path), label, valence, arousal))
    return pd.DataFrame(records, columns=["rater", "stimulus", "emotion", "valence", "arousal"])


def _on_scale(values: pd.Series, scale: Scale, step: float) -> pd.Series:
    return (denormalise(values, scale) / step).round() * step


def _long_file(truth: dict[str, str], rng: np.random.Generator) -> bytes:
    """Batch 1: long CSV, English labels and synonyms, SAM 1-9 valence and arousal."""
    frame = _simulate(truth, [f"R{n:02d}" for n in range(1, 9)], rng)
    synonyms = {"happiness": "happy", "sadness": "sad", "anger": "angry"}
    frame["emotion"] = frame["emotion"].map(lambda label: synonyms.get(label, label))
    for dim in ("valence", "arousal"):
        frame[dim] = _on_scale(frame[dim], PRESETS["sam9"], 1).astype(int)
    return frame.to_csv(index=False).encode("utf-8")


def _wide_file(truth: dict[str, str], rng: np.random.Generator) -> bytes:
    """Batch 2: one row per rater, ``<stimulus>_<dimension>`` columns, emotion as codes 1-8,
    valence and arousal on a -100..100 slider, ``;`` delimiter and decimal commas."""
    frame = _simulate(truth, [f"R{n:02d}" for n in range(9, 13)], rng)
    codes = {label: code for code, label in WIDE_CODES.items()}
    frame["emotion"] = frame["emotion"].map(codes)
    for dim in ("valence", "arousal"):
        frame[dim] = _on_scale(frame[dim], PRESETS["-100..100"], 0.5)
    # One pivot per dimension keeps V/A columns float, so they are written with decimal commas.
    wide = pd.concat(
        [frame.pivot(index="rater", columns="stimulus", values=dim).add_suffix(f"_{dim}")
         for dim in ("emotion", "valence", "arousal")],
        axis=1,
    )
    buffer = io.StringIO()
    wide.sort_index(axis=1).reset_index().to_csv(buffer, sep=";", decimal=",", index=False)
    return buffer.getvalue().encode("utf-8-sig")


def _import_ratings(
    session: Session, study_id: int, truth: dict[str, str], rng: np.random.Generator, *, actor: Role
) -> None:
    index = stimulus_index(session, study_id)
    batches = (
        ("demo_ratings_long.csv", _long_file(truth, rng), {}, PRESETS["sam9"]),
        ("demo_ratings_wide.csv", _wide_file(truth, rng), parse_label_codes(
            [f"{code}={label}" for code, label in WIDE_CODES.items()]
        ), PRESETS["-100..100"]),
    )
    for file_name, data, codes, scale in batches:
        frame = read_table(file_name, data)
        prepared = prepare_ratings(
            frame, detect_mapping(frame, index, codes), index=index, codes=codes,
            scales={"valence": scale, "arousal": scale},
        )
        import_batch(session, study_id, prepared, file_name=file_name, data=data,
                     uploaded_by=DEMO_BY, actor=actor)


def _add_predictions(
    session: Session, study_id: int, stimuli: dict[str, str], truth: dict[str, str],
    rng: np.random.Generator,
) -> None:
    for model in DEMO_MODELS:
        if session.get(RegisteredModel, model.model_id) is None:
            session.add(RegisteredModel(
                id=model.model_id, source="imported", checkpoint_sha256=SYNTHETIC,
                card={"name": model.name, "pipeline": "demo", "synthetic": True,
                      "labels": list(model.labels)},
            ))
        for path, sha in stimuli.items():
            if _has_prediction(session, study_id, sha, model.model_id):
                continue
            session.add(_prediction(model, study_id, sha, truth[path], rng))


def _has_prediction(session: Session, study_id: int, sha: str, model_id: str) -> bool:
    return session.scalar(
        select(Prediction.id).where(
            Prediction.stimulus_sha256 == sha, Prediction.model_id == model_id,
            Prediction.study_id == study_id,
            Prediction.checkpoint_sha256 == SYNTHETIC,
        )
    ) is not None


def _prediction(
    model: DemoModel, study_id: int, sha: str, emotion: str, rng: np.random.Generator
) -> Prediction:
    labels = list(model.labels)
    logits = rng.normal(0, 1, size=len(labels))
    hit = emotion in labels and rng.random() < model.accuracy
    favoured = labels.index(emotion) if hit else int(rng.integers(len(labels)))
    logits[favoured] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum()
    valence, arousal = np.clip(np.array(PROTOTYPES[emotion]) + rng.normal(0, model.noise, 2), -1, 1)
    return Prediction(
        stimulus_sha256=sha, study_id=study_id, model_id=model.model_id, checkpoint_sha256=SYNTHETIC,
        preprocessing=SYNTHETIC, detector="none", status="ok",
        label=labels[int(np.argmax(probs))],
        probs={label: float(p) for label, p in zip(labels, probs)},
        valence=float(valence), arousal=float(arousal),
    )
