"""Start-up cost: commands and pages that run no model must not import torch (issue 10, item 4).

Each check runs in a fresh interpreter (a subprocess), because ``sys.modules`` of the test
process already holds whatever other tests imported.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.__main__ import requested_command
from core.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
MODEL_RUNTIMES = ("torch", "torchvision", "onnx", "onnxruntime", "timm")


def loaded_after(code: str, env: dict[str, str] | None = None) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which heavy modules did it import?"""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {MODEL_RUNTIMES + ('pandas', 'scipy')!r}}}))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_imports_no_command_module() -> None:
    loaded = loaded_after(
        "from core.__main__ import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0"
    )
    assert not any(loaded.values()), loaded


def test_help_lists_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "core", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("module", [
    "core.cli.ratings", "core.cli.report", "core.cli.stimuli", "core.cli.models",
    "core.workflows.face_stage", "core.workflows.catalog", "core.workflows.inference",
    "core.models.devices", "core.models.card", "core.faces.detection", "ui.face_panel",
    "core.models.registry", "core.models.runtime", "ui.analysis_data", "ui.downloads",
    *(f"core.models.adapters.{family}" for family in ("emonet", "emotiefflib", "esr9", "multitask_cnn")),
])
def test_module_imports_no_model_runtime(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert not any(loaded[m] for m in MODEL_RUNTIMES), loaded


def test_the_table_names_exactly_what_each_module_registers() -> None:
    for module in sorted({module for module, _ in COMMANDS.values()}):
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(subparsers)
        assert set(subparsers.choices) == {name for name, (owner, _) in COMMANDS.items() if owner == module}


@pytest.mark.parametrize(("argv", "command"), [
    (["--help"], None),
    (["--db", "sqlite:///x.sqlite", "report", "--study", "s"], "report"),
    (["--db=sqlite:///x.sqlite", "models"], "models"),
    (["import-ratings", "--help"], "import-ratings"),
])
def test_requested_command_skips_the_db_value(argv: list[str], command: str | None) -> None:
    assert requested_command(argv) == command


def test_a_command_parses_its_own_options() -> None:
    from core.__main__ import build_parser

    args = build_parser(["rating-batches", "--study", "s"]).parse_args(["rating-batches", "--study", "s"])
    assert args.study == "s" and callable(args.handler)


def test_listing_the_models_imports_no_model_runtime(data_dir: Path) -> None:
    loaded = loaded_after(
        "from core.workflows.catalog import comparison_table, describe_models\n"
        "assert len(describe_models()) >= 10 and len(comparison_table()) >= 10"
    )
    assert not any(loaded[m] for m in MODEL_RUNTIMES), loaded


@pytest.mark.slow
def test_pages_that_run_no_model_do_not_import_torch(data_dir: Path) -> None:
    pages = [ROOT / "app.py", *(ROOT / "pages" / name for name in (
        "1_Stimuli.py", "2_Ratings.py", "4_Agreement.py", "5_Confusion.py", "6_Circumplex.py",
        "7_Model_diversity.py", "8_Across_pipelines.py", "9_Disagreements.py"))]
    code = (
        "from db.engine import make_engine, make_sessionmaker\n"
        "from core.access import Role\n"
        "from core.workflows.demo import load_demo\n"
        "with make_sessionmaker(make_engine())() as session, session.begin():\n"
        "    load_demo(session, actor=Role.OPERATOR)\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"for page in {[str(p) for p in pages]!r}:\n"
        "    at = AppTest.from_file(page, default_timeout=240).run()\n"
        "    assert not at.exception, (page, [e.value for e in at.exception])"
    )
    loaded = loaded_after(code)
    assert not any(loaded[m] for m in MODEL_RUNTIMES), loaded
