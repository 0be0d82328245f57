"""Read the weights out of a pickled ``nn.Module`` without running any of its code.

``torch.save(model)`` pickles the module's classes by reference; unpickling normally imports them
(EmotiEffLib's files need timm 0.9.x and a top-level ``mobilefacenet`` module) and may call
anything the pickle names. Here every class or function the pickle names becomes an inert stub
that only records its state; the only real callables are torch's tensor rebuilders and a few
containers. The module tree is then walked for parameters and persistent buffers, giving the
state dict that a rebuilt architecture loads with ``strict=True``.

Callers still verify the file's hash first: this is defence in depth, not a licence to open
arbitrary files.
"""

from __future__ import annotations

import collections
import pickle
import types
from pathlib import Path
from typing import Any

import torch

_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class Stub:
    """Stands for any pickled class or function: accepts anything, executes nothing."""

    origin = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Stub:
        # e.g. getattr(SomeClass, "method")(...) in a __reduce__: yields another inert stub
        return Stub(*args, **kwargs)


class _StubUnpickler(pickle.Unpickler):
    _stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module  # protocol-2 pickles use Python 2 names
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        key = (module, name)
        if key not in self._stubs:
            self._stubs[key] = type(name, (Stub,), {"origin": f"{module}.{name}"})
        return self._stubs[key]


_stub_pickle = types.SimpleNamespace(Unpickler=_StubUnpickler, load=lambda f, **kw: _StubUnpickler(f, **kw).load(), __name__="stub_pickle")


def _module_state(node: Any, where: str) -> dict:
    if not isinstance(node, Stub) or not isinstance(node.state, dict) or "_modules" not in node.state:
        raise ValueError(f"{where or 'the file'} is not a pickled torch module (found {type(node).__name__})")
    return node.state


def _collect(node: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = _module_state(node, prefix.rstrip("."))
    skip = set(state.get("_non_persistent_buffers_set") or ())
    tensors = [*state.get("_parameters", {}).items(), *((k, v) for k, v in state.get("_buffers", {}).items() if k not in skip)]
    for name, tensor in tensors:
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"entry {prefix + name!r} of the pickled module is not a tensor")
        out[prefix + name] = tensor.detach()
    for name, child in state.get("_modules", {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def module_classes(node: Any) -> str:
    """Dotted name of the pickled top-level class (for messages and architecture checks)."""
    return getattr(type(node), "origin", type(node).__name__)


def read_pickled_module(path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(class name of the pickled module, its state dict) without importing the pickled classes."""
    root = torch.load(path, map_location="cpu", pickle_module=_stub_pickle, weights_only=False)
    state: dict[str, torch.Tensor] = collections.OrderedDict()
    _collect(root, "", state)
    return module_classes(root), state
