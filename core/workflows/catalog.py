"""The models a study can use: built-in specs plus the card models and imported predictions
stored in the database, with the tables that describe them and card registration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Action, Role, require
from core.models import card as card_module
from core.models import registry
from core.models.registry import UnknownModelError
from core.models.spec import ModelSpec
from core.models.variants import variant_role
from db.models import RegisteredModel

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


def _rows(session: Session | None, source: str) -> list[RegisteredModel]:
    if session is None:
        return []
    query = select(RegisteredModel).where(RegisteredModel.source == source).order_by(RegisteredModel.id)
    return list(session.scalars(query))


def spec_from_row(row: RegisteredModel) -> ModelSpec:
    """The spec of a card model stored in the database."""
    return card_module.card_spec(card_module.validate_card(row.card), row.checkpoint_sha256)


def card_specs(session: Session | None) -> list[ModelSpec]:
    return [spec_from_row(row) for row in _rows(session, "card")]


def all_specs(session: Session | None = None) -> list[ModelSpec]:
    """Built-in specs, then card models from the database (runnable models only)."""
    return [*registry.builtin_specs().values(), *card_specs(session)]


def get_spec(model_id: str, session: Session | None = None) -> ModelSpec:
    """The spec of a built-in or card model; raises UnknownModelError with the known ids."""
    builtin = registry.builtin_specs()
    if model_id in builtin:
        return builtin[model_id]
    if session is not None:
        row = session.get(RegisteredModel, model_id)
        if row is not None and row.source == "card":
            return spec_from_row(row)
        if row is not None:
            raise UnknownModelError(f"model {model_id!r} holds imported predictions and cannot be run")
    known = ", ".join(spec.id for spec in all_specs(session))
    raise UnknownModelError(f"unknown model {model_id!r}; known models: {known}")


# --- card registration -------------------------------------------------------------------------


def register_card(session: Session, card_text: str | bytes, model_file: bytes | Path, replace: bool = False, *, actor: Role) -> ModelSpec:
    """Validate a card and its model file, store the file, record the model; returns its spec."""
    require(actor, Action.REGISTER_MODEL)
    card = card_module.validate_card(card_module.parse_card_text(card_text))
    _check_id_free(session, card.id, replace)
    card_data, stored, sha256 = card_module.store_model_file(card, model_file)
    _upsert_row(session, card.id, card_data, stored, sha256)
    return card_module.card_spec(card_module.validate_card(card_data), sha256)


def _check_id_free(session: Session, model_id: str, replace: bool) -> None:
    if model_id in registry.builtin_specs():
        raise card_module.CardError(f"card field `id`: {model_id!r} is a built-in model; choose another id")
    row = session.get(RegisteredModel, model_id)
    if row is not None and (row.source != "card" or not replace):
        raise card_module.CardError(
            f"card field `id`: a {row.source} model named {model_id!r} exists already; choose another id"
            + (" or replace it" if row.source == "card" else ""))


def _upsert_row(session: Session, model_id: str, card_data: dict[str, Any], stored: Path, sha256: str) -> None:
    row = session.get(RegisteredModel, model_id) or RegisteredModel(id=model_id, source="card")
    row.card = card_data
    row.checkpoint_path = os.fspath(stored)
    row.checkpoint_sha256 = sha256
    session.add(row)
    session.flush()


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
    """Imported predictions: the card dict written by core.workflows.predictions_import (name, pipeline,
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
