"""The registry as data: every built-in spec is complete and consistent; tables; lookups."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from core.models import checkpoints, registry
from core.models.checkpoints import CheckpointError
from core.models.preprocess import RESIZE_METHODS
from core.ratings.labels import CANONICAL, to_canonical
from core.workflows import catalog

SPECS = registry.builtin_specs()
EXPECTED_IDS = {"enet_b0_8_va_mtl", "mobilevit_va_mtl", "mbf_va_mtl", "emonet_8", "wtomin_mtl", "esr9"}


def test_all_issue_models_are_registered() -> None:
    assert EXPECTED_IDS <= set(SPECS)
    assert {f"wtomin_mtl_s{i}" for i in range(5)} <= set(SPECS)


@pytest.mark.parametrize("model_id", sorted(SPECS))
def test_spec_is_complete(model_id: str) -> None:
    spec = SPECS[model_id]
    assert spec.id == model_id and spec.source == "builtin"
    for field in ("name", "pipeline", "paper", "license", "architecture", "training_data", "strategy"):
        assert getattr(spec, field).strip(), f"{model_id}: {field} is empty"
    assert spec.params > 0 and spec.preprocessing.version
    assert spec.outputs <= {"probs", "va", "aus"} and spec.outputs
    assert spec.preprocessing.resize in RESIZE_METHODS
    assert len(spec.preprocessing.mean) == len(spec.preprocessing.std) == 3
    module = importlib.import_module(f"core.models.adapters.{spec.adapter}")
    assert callable(module.load) and spec in module.SPECS


@pytest.mark.parametrize("model_id", sorted(SPECS))
def test_labels_map_by_name(model_id: str) -> None:
    spec = SPECS[model_id]
    assert spec.canonical_labels == [to_canonical(label) for label in spec.native_labels]
    assert set(spec.canonical_labels) <= set(CANONICAL)


@pytest.mark.parametrize("model_id", sorted(SPECS))
def test_checkpoints_are_verifiable_or_registered(model_id: str) -> None:
    """Each file carries a well-formed published hash, or (no public link) must be registered."""
    for slot in SPECS[model_id].checkpoints:
        for variant in (slot, *slot.alternatives):
            if variant.sha256:
                assert re.fullmatch(r"[0-9a-f]{64}", variant.sha256)
            if variant.git_blob:
                assert re.fullmatch(r"[0-9a-f]{40}", variant.git_blob)
            if variant.url:
                assert variant.url.startswith("https://")
                assert variant.sha256 or variant.git_blob, f"{variant.name}: downloadable but unverifiable"


@pytest.mark.parametrize("model_id", sorted(SPECS))
def test_missing_checkpoint_is_a_clear_state(model_id: str, data_dir: Path) -> None:
    spec = SPECS[model_id]
    status = checkpoints.checkpoint_status(spec)
    assert status.state == "missing" and status.paths == []
    assert status.where_to_get
    with pytest.raises(CheckpointError, match=re.escape(model_id)):
        registry.load_adapter(spec)


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown model 'nope'; known models: enet_b0_8_va_mtl"):
        catalog.get_spec("nope")
    assert catalog.get_spec("esr9") is SPECS["esr9"]


def test_describe_models_columns_and_rows() -> None:
    table = catalog.describe_models()
    assert list(table.columns) == catalog.DESCRIBE_COLUMNS
    assert list(table.model_id) == list(SPECS)
    assert (table.source == "builtin").all()
    row = table.set_index("model_id").loc["emonet_8"]
    assert row.classes == 8 and set(row.labels) == set(CANONICAL)


def test_comparison_table_is_the_papers_table() -> None:
    table = catalog.comparison_table()
    assert list(table.columns) == list(catalog.COMPARISON_COLUMNS.values())
    esr = table.set_index("Model").loc["ESR-9"]
    assert esr["Params (M)"] == 20.35 and esr["Classes"] == 8 and esr["VA output"] == "yes (raw)"


def test_all_specs_with_session_adds_nothing_when_no_cards(sessions) -> None:
    with sessions.begin() as session:
        assert [s.id for s in catalog.all_specs(session)] == list(SPECS)
