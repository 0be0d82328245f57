"""Strict loading of official state_dict checkpoints into our rebuilt architectures."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

DATA_PARALLEL_PREFIX = "module."
SHOWN_KEYS = 5


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a plain state_dict file (zip or legacy format), with a DataParallel
    ``module.`` prefix removed. ``weights_only=True``: nothing but tensors is unpickled."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a state_dict file"
        raise ValueError(f"{path.name} is not a readable PyTorch state_dict file ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ValueError(f"{path.name} holds a {type(loaded).__name__}, expected a state_dict")
    return {_strip(key): value for key, value in loaded.items()}


def _strip(key: str) -> str:
    return key[len(DATA_PARALLEL_PREFIX):] if key.startswith(DATA_PARALLEL_PREFIX) else key


def load_strict(net: nn.Module, path: Path) -> nn.Module:
    """Load ``path`` into ``net`` requiring exactly the same keys and shapes; a clear error
    names the file and the first differing keys otherwise."""
    state = read_state_dict(path)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{path.name} does not fit {type(net).__name__}: "
            f"{len(missing)} missing keys {missing[:SHOWN_KEYS]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:SHOWN_KEYS]}, "
            f"{len(wrong_shape)} keys of another shape {wrong_shape[:SHOWN_KEYS]}; "
            "is it the right checkpoint for this model?"
        )
    net.load_state_dict(state, strict=True)
    return net
