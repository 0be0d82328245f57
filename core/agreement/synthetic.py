"""A seeded synthetic study in the ``db.analysis`` frame contracts, for benchmarks and tests.

Each stimulus has a latent emotion and latent valence/arousal; raters and models see them with
noise, raters label correctly with probability ``rater_accuracy``. Models alternate between
8-class and 7-class (no contempt) label sets so the contempt handling is exercised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.agreement.data import LABELS, N_LABELS

SEVEN = tuple(label for label in LABELS if label != "contempt")


def synthetic_study(
    n_stimuli: int = 200, n_raters: int = 10, n_models: int = 3, seed: int = 0,
    rater_accuracy: float = 0.7, missing_share: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ratings, predictions, stimuli, models) of a synthetic study."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, N_LABELS, n_stimuli)
    latent_v, latent_a = rng.uniform(-0.8, 0.8, (2, n_stimuli))
    stimulus_ids = np.arange(1, n_stimuli + 1)
    names = np.array([f"s{i:05d}.png" for i in stimulus_ids], dtype=object)
    stimuli = pd.DataFrame({
        "stimulus": names, "stimulus_id": stimulus_ids, "sha256": [f"{i:064x}" for i in stimulus_ids],
        "intended_emotion": np.array(LABELS, dtype=object)[truth], "precropped": True,
        "gender": rng.choice(["female", "male"], n_stimuli),
        "set": rng.choice(["A", "B", "C"], n_stimuli),
    })
    ratings = _ratings(rng, truth, latent_v, latent_a, stimulus_ids, names, n_raters,
                       rater_accuracy, missing_share)
    predictions, models = _predictions(rng, truth, latent_v, latent_a, stimulus_ids, names, n_models)
    return ratings, predictions, stimuli, models


def _ratings(rng, truth, latent_v, latent_a, stimulus_ids, names, n_raters, accuracy, missing):
    n = len(truth)
    correct = rng.random((n_raters, n)) < accuracy
    labels = np.where(correct, truth, rng.integers(0, N_LABELS, (n_raters, n)))
    rater_bias = rng.normal(0, 0.1, (n_raters, 1))
    valence = np.clip(latent_v + rater_bias + rng.normal(0, 0.25, (n_raters, n)), -1, 1)
    arousal = np.clip(latent_a + rng.normal(0, 0.3, (n_raters, n)), -1, 1)
    keep = rng.random((n_raters, n)) >= missing
    rater, item = np.nonzero(keep)
    return pd.DataFrame({
        "stimulus": names[item], "stimulus_id": stimulus_ids[item],
        "rater": np.array([f"r{r:03d}" for r in range(n_raters)], dtype=object)[rater],
        "batch_id": 1, "emotion": np.array(LABELS, dtype=object)[labels[rater, item]],
        "valence": np.round(valence[rater, item] * 4) / 4, "arousal": np.round(arousal[rater, item] * 4) / 4,
    })


def _predictions(rng, truth, latent_v, latent_a, stimulus_ids, names, n_models):
    frames, described = [], []
    n = len(truth)
    for m in range(n_models):
        own = LABELS if m % 2 == 0 else SEVEN
        able = np.isin(LABELS, own)
        logits = rng.normal(0, 1, (n, N_LABELS))
        logits[np.arange(n), truth] += 2.0
        logits[:, ~able] = -np.inf
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[:, ~able] = np.nan
        frame = pd.DataFrame({
            "stimulus": names, "stimulus_id": stimulus_ids, "model_id": f"model_{m}",
            "label": np.array(LABELS, dtype=object)[np.nanargmax(probs, axis=1)],
            "valence": latent_v + rng.normal(0, 0.3, n), "arousal": latent_a + rng.normal(0, 0.35, n),
        })
        for k, label in enumerate(LABELS):
            frame[f"p_{label}"] = probs[:, k]
        frames.append(frame)
        described.append({"model_id": f"model_{m}", "name": f"Model {m}",
                          "pipeline": "ABC"[m % 3], "labels": list(own), "source": "synthetic"})
    columns = ["model_id", "name", "pipeline", "labels", "source"]
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["stimulus", "stimulus_id", "model_id", "label", "valence", "arousal"])
    return predictions, pd.DataFrame(described, columns=columns)
