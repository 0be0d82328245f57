"""The model registry: built-in specs from the family modules plus card models from the database.

Every model is data (a frozen ModelSpec). Each family module under ``core.models.adapters``
exports ``SPECS`` and ``load(spec, paths, device, half)``; card models (ONNX/TorchScript file plus
a model card) live in ``registered_model`` rows and load through ``core.models.card``. Imported
predictions (source "imported") are listed for the tables but cannot be run.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import checkpoints
from core.models.adapters.base import Adapter
from core.models.spec import ModelSpec
from core.models.variants import variant_role
from db.models import RegisteredModel

FAMILY_MODULES: tuple[str, ...] = (
    "core.models.adapters.emotiefflib",
    "core.models.adapters.emonet",
    "core.models.adapters.multitask_cnn",
    "core.models.adapters.esr9",
)
CARD_MODULE = "core.models.card"

DESCRIBE_COLUMNS = [
    "model_id", "name", "pipeline", "labels", "source", "architecture", "pretraining",
    "training_data", "strategy", "classes", "va_output", "params", "license", "paper",
    "variant", "variant_note",
]
COMPARISON_COLUMNS = {
    "name": "Model", "pipeline": "Pipeline", "architecture": "Architecture",
    "pretraining": "Pre-training", "training_data": "Training data", "strategy": "Strategy",
    "classes": "Classes", "va_output": "VA output", "params_m": "Params (M)", "license": "License",
}


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@cache
def builtin_specs() -> dict[str, ModelSpec]:
    """All built-in specs by id (family modules imported once)."""
    specs: dict[str, ModelSpec] = {}
    for module_name in FAMILY_MODULES:
        for spec in importlib.import_module(module_name).SPECS:
            if spec.id in specs:
                raise ValueError(f"model id {spec.id!r} is declared twice ({module_name})")
            specs[spec.id] = spec
    return specs


def _card_module() -> ModuleType:
    return importlib.import_module(CARD_MODULE)


def _rows(session: Session | None, source: str) -> list[RegisteredModel]:
    if session is None:
        return []
    query = select(RegisteredModel).where(RegisteredModel.source == source).order_by(RegisteredModel.id)
    return list(session.scalars(query))


def card_specs(session: Session | None) -> list[ModelSpec]:
    return [_card_module().spec_from_row(row) for row in _rows(session, "card")]


def all_specs(session: Session | None = None) -> list[ModelSpec]:
    """Built-in specs, then card models from the database (runnable models only)."""
    return [*builtin_specs().values(), *card_specs(session)]


def get_spec(model_id: str, session: Session | None = None) -> ModelSpec:
    """The spec of a built-in or card model; raises UnknownModelError with the known ids."""
    builtin = builtin_specs()
    if model_id in builtin:
        return builtin[model_id]
    if session is not None:
        row = session.get(RegisteredModel, model_id)
        if row is not None and row.source == "card":
            return _card_module().spec_from_row(row)
        if row is not None:
            raise UnknownModelError(f"model {model_id!r} holds imported predictions and cannot be run")
    known = ", ".join(spec.id for spec in all_specs(session))
    raise UnknownModelError(f"unknown model {model_id!r}; known models: {known}")


def loader_module(spec: ModelSpec) -> ModuleType:
    if spec.source == "card":
        return _card_module()
    return importlib.import_module(f"core.models.adapters.{spec.adapter}")


def load_adapter(spec: ModelSpec, device: str = "cpu", half: bool = False) -> Adapter:
    """Verify the checkpoint files (re-hashing them) and build the runnable adapter."""
    paths = checkpoints.resolve(spec)
    return loader_module(spec).load(spec, paths, device, half)


# --- tables ------------------------------------------------------------------------------------


def _va_output(spec: ModelSpec) -> str:
    if "va" not in spec.outputs:
        return "no"
    return {"raw": "yes (raw)", "clip": "yes (clipped)", "bins": "yes (bin expectation)"}[spec.va_decode]


def _spec_row(spec: ModelSpec, ids: frozenset[str]) -> dict:
    labels = spec.canonical_labels if "probs" in spec.outputs else []
    return {
        "model_id": spec.id, "name": spec.name, "pipeline": spec.pipeline, "labels": labels,
        "source": spec.source, "architecture": spec.architecture, "pretraining": spec.pretraining,
        "training_data": spec.training_data, "strategy": spec.strategy, "classes": len(labels),
        "va_output": _va_output(spec), "params": spec.params, "license": spec.license,
        "paper": spec.paper, "variant": variant_role(spec, ids), "variant_note": spec.variant_note,
    }


def _imported_row(row: RegisteredModel) -> dict:
    """Imported predictions: the card dict written by core.predictions_import (name, pipeline,
    tool, labels, va, ...)."""
    card = row.card or {}
    labels = list(card.get("labels", []))
    return {
        "model_id": row.id, "name": card.get("name", row.id),
        "pipeline": card.get("pipeline") or "imported predictions",
        "labels": labels, "source": "imported", "architecture": card.get("tool", ""),
        "pretraining": "", "training_data": "", "strategy": "", "classes": len(labels),
        "va_output": "yes (imported)" if card.get("va") else "no", "params": None,
        "license": card.get("license", ""), "paper": card.get("paper", ""),
        "variant": "", "variant_note": "",
    }


def describe_models(session: Session | None = None) -> pd.DataFrame:
    """One row per model (built-in, card, imported) with the columns in DESCRIBE_COLUMNS."""
    specs = all_specs(session)
    ids = frozenset(spec.id for spec in specs)
    rows = [_spec_row(spec, ids) for spec in specs]
    rows += [_imported_row(row) for row in _rows(session, "imported")]
    return pd.DataFrame(rows, columns=DESCRIBE_COLUMNS)


def comparison_table(session: Session | None = None) -> pd.DataFrame:
    """The paper's model comparison table (display names as column headers)."""
    table = describe_models(session)
    table["params_m"] = (table["params"].astype("Float64") / 1e6).round(2)
    return table[list(COMPARISON_COLUMNS)].rename(columns=COMPARISON_COLUMNS).reset_index(drop=True)
