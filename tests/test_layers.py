"""Imports point one way: UI -> command line -> workflows -> db -> pure core packages.

Every import statement counts, including ones inside functions, so a lazy import cannot hide a
dependency. A new file directly under ``core/`` fails until it is placed in a stage package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PURE_PACKAGES = ("core.access", "core.io", "core.ratings", "core.faces", "core.models", "core.agreement", "core.reporting")
# Higher number = higher layer; a module may import its own layer or lower ones.
LAYERS = {"ui": 4, "cli": 3, "workflows": 2, "db": 1, "pure": 0}
FORBIDDEN_EVERYWHERE_BELOW_UI = ("streamlit",)


def layer_of(module: str) -> str | None:
    """The layer of a first-party module name; None for third-party modules."""
    top = module.split(".")[0]
    if top in ("app", "pages", "ui"):
        return "ui"
    if top == "db":
        return "db"
    if top != "core" or module == "core":
        return "pure" if module == "core" else None
    if module == "core.__main__" or module.startswith("core.cli"):
        return "cli"
    if module.startswith("core.workflows"):
        return "workflows"
    if any(module == p or module.startswith(p + ".") for p in PURE_PACKAGES):
        return "pure"
    return "unplaced"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) for every import statement and constant importlib.import_module call."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from core import workflows` imports the subpackage core.workflows
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def target_layer(imported: str) -> str | None:
    """Layer of an imported name, trying `a.b.c` then `a.b` (the last part may be a symbol)."""
    layer = layer_of(imported)
    if layer == "unplaced" and "." in imported:
        parent = layer_of(imported.rpartition(".")[0])
        return parent if parent != "unplaced" else layer
    return layer


def violations(path: Path, source: str | None = None) -> list[str]:
    module = module_name(path)
    own = layer_of(module)
    text = path.read_text(encoding="utf-8") if source is None else source
    problems: list[str] = []
    if own == "unplaced":
        problems.append(f"{module}: not in a stage package ({', '.join(PURE_PACKAGES)}, core.workflows, core.cli)")
        return problems
    for line, imported in imported_modules(text, module, path.name == "__init__.py"):
        where = f"{path.relative_to(ROOT)}:{line}"
        if own != "ui" and imported.split(".")[0] in FORBIDDEN_EVERYWHERE_BELOW_UI:
            problems.append(f"{where}: {own} layer imports {imported}")
            continue
        target = target_layer(imported)
        if target is None or own is None:
            continue
        if target == "unplaced" or LAYERS[target] > LAYERS[own]:
            problems.append(f"{where}: {own} layer imports {imported} ({target})")
    return problems


def source_files() -> list[Path]:
    files = [ROOT / "app.py"]
    for folder in ("pages", "ui", "core", "db"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def test_every_import_points_down_the_layers() -> None:
    problems = [problem for path in source_files() for problem in violations(path)]
    assert problems == []


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("core/faces/fake.py", "def f():\n    from db.models import Study\n", "pure layer imports db.models.Study (db)"),
        ("core/io/fake.py", "import streamlit as st\n", "pure layer imports streamlit"),
        ("core/ratings/fake.py", "from core.workflows import demo\n", "pure layer imports core.workflows.demo (workflows)"),
        ("core/models/fake.py", "from core import workflows\n", "pure layer imports core.workflows (workflows)"),
        ("db/fake.py", "from core.workflows.inference import run_model\n", "db layer imports core.workflows.inference"),
        ("db/fake.py", "import importlib\nimportlib.import_module('core.cli.models')\n", "db layer imports core.cli.models (cli)"),
        ("core/workflows/fake.py", "from core.cli import models\n", "workflows layer imports core.cli.models (cli)"),
        ("core/cli/fake.py", "from ui.chrome import page_setup\n", "cli layer imports ui.chrome.page_setup (ui)"),
        ("core/fake.py", "import os\n", "core.fake: not in a stage package"),
    ],
)
def test_a_wrong_import_is_reported(relative: str, source: str, expected: str) -> None:
    problems = violations(ROOT / relative, source)
    assert len(problems) == 1 and expected in problems[0]


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("core/faces/fake.py", "from core.io.storage import blob_path\nfrom core.models.spec import ModelSpec\n"),
        ("db/fake.py", "from core.ratings.labels import CANONICAL\n"),
        ("core/workflows/fake.py", "from db.models import Study\nfrom core.faces.crops import Face\n"),
        ("core/cli/fake.py", "from core.workflows import catalog\nfrom db.engine import make_engine\n"),
        ("pages/fake.py", "import streamlit as st\nfrom core.cli import models\nfrom db import ratings\n"),
    ],
)
def test_imports_down_the_layers_pass(relative: str, source: str) -> None:
    assert violations(ROOT / relative, source) == []
