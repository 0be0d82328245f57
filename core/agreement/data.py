"""Arrays aligned on one stimulus index, built once from the long DataFrames of ``db.analysis``.

Every statistic works on these arrays: raters x stimuli matrices for humans, models x stimuli
matrices for predictions. Labels are integer codes into ``core.ratings.labels.CANONICAL`` (-1 = missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from core.ratings.labels import CANONICAL
from core.ratings.repeats import resolve_repeats

LABELS: tuple[str, ...] = CANONICAL
N_LABELS = len(LABELS)
DIMENSIONS: tuple[str, ...] = ("valence", "arousal")
STIMULUS_BASE_COLUMNS = ("stimulus", "stimulus_id", "sha256", "intended_emotion", "precropped")
MISSING = -1


def label_codes(values: pd.Series, where: str) -> np.ndarray:
    """Integer codes of canonical labels (missing -> -1); raises naming any unknown label."""
    codes = pd.Index(LABELS).get_indexer(pd.Series(values, dtype=object)).astype(np.int16)
    unknown = values.notna().to_numpy() & (codes == MISSING)
    if unknown.any():
        bad = sorted(set(values[unknown].astype(str)))[:5]
        raise ValueError(
            f"{where}: labels {bad} are not canonical names {list(LABELS)}; "
            "map them with core.ratings.labels.to_canonical before analysis"
        )
    return codes


@dataclass(frozen=True)
class StudyData:
    """Human ratings and model predictions of one study on a shared stimulus index.

    Attributes are numpy arrays indexed [rater or model, stimulus]; ``stimulus_ids`` gives the
    stimulus of each column. ``notes`` lists data-handling decisions made while building (e.g.
    duplicate ratings dropped) so tables can show them.
    """

    stimulus_ids: np.ndarray
    stimulus_names: np.ndarray
    raters: np.ndarray
    labels: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    intended: np.ndarray
    attributes: pd.DataFrame
    model_ids: tuple[str, ...] = ()
    model_names: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ()
    can_output: np.ndarray = field(default_factory=lambda: np.zeros((0, N_LABELS), bool))
    model_labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int16))
    model_valence: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    model_arousal: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    model_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, N_LABELS)))
    notes: tuple[str, ...] = ()

    @property
    def n_items(self) -> int:
        return len(self.stimulus_ids)

    @property
    def n_raters(self) -> int:
        return len(self.raters)

    @property
    def n_models(self) -> int:
        return len(self.model_ids)

    def human(self, dimension: str) -> np.ndarray:
        """Raters x stimuli matrix of ``valence``, ``arousal`` (float, NaN) or ``emotion`` (codes)."""
        return {"valence": self.valence, "arousal": self.arousal, "emotion": self.labels}[
            dimension
        ]

    def model(self, dimension: str) -> np.ndarray:
        """Models x stimuli matrix of ``valence``, ``arousal`` or ``emotion`` (codes)."""
        return {
            "valence": self.model_valence, "arousal": self.model_arousal,
            "emotion": self.model_labels,
        }[dimension]

    def vote_counts(self) -> np.ndarray:
        """Stimuli x labels matrix: how many raters chose each canonical label (a fresh copy)."""
        return self._vote_counts.copy()

    @cached_property
    def _vote_counts(self) -> np.ndarray:
        rater_idx, item_idx = np.nonzero(self.labels != MISSING)
        cells = item_idx * N_LABELS + self.labels[rater_idx, item_idx]
        counts = np.bincount(cells, minlength=self.n_items * N_LABELS)
        return counts.reshape(self.n_items, N_LABELS).astype(np.float64)

    @classmethod
    def from_frames(
        cls,
        ratings: pd.DataFrame,
        predictions: pd.DataFrame | None = None,
        stimuli: pd.DataFrame | None = None,
        models: pd.DataFrame | None = None,
    ) -> StudyData:
        """Align ratings, predictions, stimuli and model descriptions on one stimulus index.

        A rater who rated the same stimulus more than once (in one file or several batches) has
        the repeats resolved by their batch's policy (``core.ratings.repeats``; without a
        ``repeat_policy`` column the newest batch wins); what was done is recorded in
        ``notes``. Models missing from
        ``models`` get pipeline "unknown" and the labels for which they give probabilities.
        """
        _require(ratings, ["stimulus", "stimulus_id", "rater", "batch_id", "emotion",
                           "valence", "arousal"], "ratings")
        predictions = _empty_predictions() if predictions is None else predictions
        _require(predictions, ["stimulus", "stimulus_id", "model_id", "label", "valence",
                               "arousal"], "predictions")
        stimuli = _stimuli_from(ratings, predictions) if stimuli is None else stimuli
        _require(stimuli, ["stimulus", "stimulus_id"], "stimuli")
        _require_one_id_type({"ratings": ratings, "predictions": predictions, "stimuli": stimuli})

        names = pd.concat([
            stimuli[["stimulus_id", "stimulus"]], ratings[["stimulus_id", "stimulus"]],
            predictions[["stimulus_id", "stimulus"]],
        ]).drop_duplicates("stimulus_id").sort_values("stimulus_id")
        stimulus_ids = names["stimulus_id"].to_numpy()
        position = pd.Index(stimulus_ids)

        deduped, notes = resolve_repeats(ratings)
        raters = np.array(sorted(deduped["rater"].astype(str).unique()), dtype=object)
        rows = pd.Index(raters).get_indexer(deduped["rater"].astype(str))
        cols = position.get_indexer(deduped["stimulus_id"])
        shape = (len(raters), len(stimulus_ids))
        labels = np.full(shape, MISSING, np.int16)
        labels[rows, cols] = label_codes(deduped["emotion"], "ratings column 'emotion'")
        valence, arousal = np.full(shape, np.nan), np.full(shape, np.nan)
        valence[rows, cols] = deduped["valence"].to_numpy(float)
        arousal[rows, cols] = deduped["arousal"].to_numpy(float)

        stimulus_rows = stimuli.drop_duplicates("stimulus_id").set_index("stimulus_id").reindex(
            stimulus_ids
        )
        intended_values = (
            stimulus_rows["intended_emotion"] if "intended_emotion" in stimulus_rows
            else pd.Series([None] * len(stimulus_ids))
        )
        intended = label_codes(
            pd.Series(intended_values.to_numpy(), dtype=object), "stimuli column 'intended_emotion'"
        )
        attributes = stimulus_rows.drop(
            columns=[c for c in STIMULUS_BASE_COLUMNS if c in stimulus_rows], errors="ignore"
        ).reset_index(drop=True)
        model_fields = _model_arrays(predictions, models, position)
        return cls(
            stimulus_ids=stimulus_ids, stimulus_names=names["stimulus"].to_numpy(object),
            raters=raters, labels=labels, valence=valence, arousal=arousal, intended=intended,
            attributes=attributes, notes=tuple(notes) + model_fields.pop("notes"),
            **model_fields,
        )


def _require(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing} (see the contract in db/analysis.py)")


def _require_one_id_type(frames: dict[str, pd.DataFrame]) -> None:
    """Numbers and text never match as ids (1 != "1"): mixing them would split stimuli."""
    kinds = {name: _id_kinds(frame["stimulus_id"]) for name, frame in frames.items()}
    if len(set().union(*kinds.values())) > 1:
        found = ", ".join(f"{name}: {'/'.join(sorted(k))}" for name, k in kinds.items() if k)
        raise ValueError(
            f"stimulus_id mixes numbers and text ({found}); give every frame the same id type "
            "(db.analysis loads integer ids)"
        )


def _id_kinds(ids: pd.Series) -> set[str]:
    if pd.api.types.is_numeric_dtype(ids):
        return {"number"} if len(ids) else set()
    return {"text" if isinstance(v, str) else "number" for v in ids.dropna().unique()}


def _empty_predictions() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["stimulus", "stimulus_id", "model_id", "label", "valence", "arousal"]
        + [f"p_{label}" for label in LABELS]
    )


def _stimuli_from(ratings: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    both = pd.concat([ratings[["stimulus", "stimulus_id"]], predictions[["stimulus", "stimulus_id"]]])
    return both.drop_duplicates("stimulus_id")


def _model_arrays(
    predictions: pd.DataFrame, models: pd.DataFrame | None, position: pd.Index
) -> dict:
    prob_columns = [f"p_{label}" for label in LABELS]
    predictions = predictions.copy()
    for column in prob_columns:
        if column not in predictions:
            predictions[column] = np.nan
    model_ids = sorted(predictions["model_id"].astype(str).unique())
    if models is not None and len(models):
        listed = [m for m in models["model_id"].astype(str) if m in set(model_ids)]
        model_ids = listed + [m for m in model_ids if m not in set(listed)]
    info = (
        models.assign(model_id=models["model_id"].astype(str)).set_index("model_id")
        if models is not None and len(models) else pd.DataFrame()
    )
    shape = (len(model_ids), len(position))
    out_labels = np.full(shape, MISSING, np.int16)
    out_valence, out_arousal = np.full(shape, np.nan), np.full(shape, np.nan)
    probs = np.full(shape + (N_LABELS,), np.nan)
    can_output = np.zeros((len(model_ids), N_LABELS), bool)
    names, pipelines, notes = [], [], []
    for m, model_id in enumerate(model_ids):
        rows = predictions[predictions["model_id"].astype(str) == model_id]
        cols = position.get_indexer(rows["stimulus_id"])
        out_labels[m, cols] = label_codes(rows["label"], f"predictions of model {model_id!r}")
        out_valence[m, cols] = rows["valence"].to_numpy(float)
        out_arousal[m, cols] = rows["arousal"].to_numpy(float)
        probs[m, cols] = rows[prob_columns].to_numpy(float)
        if model_id in info.index:
            names.append(str(info.at[model_id, "name"]) if "name" in info else model_id)
            pipeline = info.at[model_id, "pipeline"] if "pipeline" in info else None
            pipelines.append("unknown" if pipeline is None or pd.isna(pipeline) else str(pipeline))
            listed = info.at[model_id, "labels"] if "labels" in info else None
            can_output[m] = np.isin(LABELS, list(listed)) if listed is not None else False
        else:
            names.append(model_id)
            pipelines.append("unknown")
        if not can_output[m].any():
            can_output[m] = np.isfinite(probs[m]).any(axis=0)
            can_output[m, np.unique(out_labels[m][out_labels[m] >= 0])] = True
            inferred = ", ".join(np.array(LABELS)[can_output[m]])
            notes.append(
                f"model {model_id!r}: label set not described; inferred from its outputs "
                f"({inferred})" if inferred else
                f"model {model_id!r}: gives no emotion labels or probabilities (valence/arousal "
                "only); its label metrics are undefined"
            )
    return {
        "model_ids": tuple(model_ids), "model_names": tuple(names), "pipelines": tuple(pipelines),
        "can_output": can_output, "model_labels": out_labels, "model_valence": out_valence,
        "model_arousal": out_arousal, "model_probs": probs, "notes": tuple(notes),
    }
