"""Random-weight checkpoints in the official file formats of pipelines B (EmoNet) and C
(Multitask-CNN), for tests that must run the real loading code without the real weights.

EmoNet ships as a state_dict saved from a DataParallel model (``module.`` prefix); the
Multitask-CNN students as plain state_dicts. Both predate torch's zip format, so the fakes use
the legacy serialisation (``torch.load`` reads either).
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.models.nets.emonet import EmoNet
from core.models.nets.resnet50_ferplus import MultitaskCNN
from core.models.spec import ModelSpec


def _save_legacy(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def write_emonet_checkpoint(path: Path, seed: int = 0, prefix: str = "module.") -> Path:
    torch.manual_seed(seed)
    state = EmoNet().state_dict()
    return _save_legacy({prefix + key: value for key, value in state.items()}, path)


def write_multitask_student(path: Path, seed: int = 0, prefix: str = "") -> Path:
    torch.manual_seed(seed)
    state = MultitaskCNN().state_dict()
    return _save_legacy({prefix + key: value for key, value in state.items()}, path)


WRITERS = {"emonet": write_emonet_checkpoint, "multitask_cnn": write_multitask_student}


def make_fake_checkpoint(spec: ModelSpec, folder: Path, seed: int = 0) -> list[Path]:
    """One random-weight file per checkpoint slot of ``spec``, named as the slot, in ``folder``."""
    writer = WRITERS[spec.adapter]
    return [writer(folder / slot.name, seed + index) for index, slot in enumerate(spec.checkpoints)]
