"""The model registry: built-in specs from the family modules and the loader of any spec.

Every model is data (a frozen ModelSpec). Each family module under ``core.models.adapters``
exports ``SPECS`` and ``load(spec, paths, device, half)``; card models (ONNX/TorchScript file plus
a model card) load through ``core.models.card``. Card models and imported predictions are stored
in the database; ``core.workflows.catalog`` lists them beside the built-in ones.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

from core.models import checkpoints
from core.models.adapters.base import Adapter
from core.models.spec import ModelSpec

FAMILY_MODULES: tuple[str, ...] = (
    "core.models.adapters.emotiefflib",
    "core.models.adapters.emonet",
    "core.models.adapters.multitask_cnn",
    "core.models.adapters.esr9",
)
CARD_MODULE = "core.models.card"


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


def loader_module(spec: ModelSpec) -> ModuleType:
    if spec.source == "card":
        return _card_module()
    return importlib.import_module(f"core.models.adapters.{spec.adapter}")


def load_adapter(spec: ModelSpec, device: str = "cpu", half: bool = False) -> Adapter:
    """Verify the checkpoint files (re-hashing them) and build the runnable adapter."""
    paths = checkpoints.resolve(spec)
    return loader_module(spec).load(spec, paths, device, half)
