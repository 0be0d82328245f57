"""Random-weight checkpoints in every built-in family's official file format, plus a real face.

``make_fake_checkpoint(spec, folder)`` dispatches on ``spec.adapter`` (FAKES); pipelines B and C
come from tests/model_fakes_b.py. ``surrogate_spec`` swaps the published hashes for the fakes'
own hashes *of the same kind* (git blob or sha256), so registration runs the real verification
code path rather than pinning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from skimage import data

from core.faces.crops import Face
from core.models import checkpoints
from core.models.adapters import emotiefflib
from core.models.nets.esr9 import ESR9
from core.models.spec import CheckpointFile, ModelSpec
from tests import model_fakes_b

# facenet-pytorch MTCNN on skimage.data.astronaut() (shared/MODELS.md). The landmarks were placed
# by hand on the eyes, nose tip and mouth corners: approximate, for exercising aligned crops only.
ASTRONAUT_FACE = Face(
    box=(181.1, 62.2, 267.7, 172.1),
    score=0.99999774,
    landmarks=((202.7, 101.0), (247.3, 103.3), (225.0, 123.3), (206.7, 143.3), (241.7, 143.3)),
)


def astronaut() -> tuple[np.ndarray, Face]:
    """A real public face photo (512x512 RGB uint8, shipped with scikit-image) and its face."""
    return data.astronaut(), ASTRONAUT_FACE


def export_onnx(network: torch.nn.Module, size: tuple[int, int], path: Path) -> Path:
    """Export as EmotiEffLib did (training_and_examples/convert_pt_to_onnx.py): opset 11, input
    ``input``, output ``output``, dynamic batch."""
    with warnings.catch_warnings():  # legacy-exporter and tracer warnings are expected here
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network.eval(), torch.randn(1, 3, *size), str(path), opset_version=11,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}}, dynamo=False,
        )
    return path


def emotiefflib_network(spec: ModelSpec, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return emotiefflib.build_network(spec).eval()


def fake_emotiefflib(spec: ModelSpec, folder: Path, seed: int = 0) -> list[Path]:
    """The primary official format: the ONNX export."""
    network = emotiefflib_network(spec, seed)
    return [export_onnx(network, spec.preprocessing.input_size, folder / spec.checkpoints[0].name)]


def fake_emotiefflib_pickle(spec: ModelSpec, folder: Path, seed: int = 0) -> Path:
    """The alternative official format: the whole module pickled by ``torch.save(model)``. enet
    gets its classifier wrapped in Sequential, as in the authors' training notebook."""
    network = emotiefflib_network(spec, seed)
    if spec.options.get("timm_arch") == "tf_efficientnet_b0":
        network.classifier = torch.nn.Sequential(network.classifier)
    path = folder / spec.checkpoints[0].alternatives[0].name
    torch.save(network, path)
    return path


def fake_esr9(spec: ModelSpec, folder: Path, seed: int = 0) -> list[Path]:
    """Base and nine branch state dicts in torch's legacy (pre-zip) format, as published."""
    torch.manual_seed(seed)
    network = ESR9()
    modules = [network.base, *network.branches]
    paths = []
    for slot, module in zip(spec.checkpoints, modules):
        path = folder / slot.name
        torch.save(module.state_dict(), path, _use_new_zipfile_serialization=False)
        paths.append(path)
    return paths


def _fake_b(spec: ModelSpec, folder: Path, seed: int = 0) -> list[Path]:
    return model_fakes_b.make_fake_checkpoint(spec, folder, seed)


FAKES: dict[str, Callable[..., list[Path]]] = {
    "emotiefflib": fake_emotiefflib,
    "esr9": fake_esr9,
    "emonet": _fake_b,
    "multitask_cnn": _fake_b,
}


def make_fake_checkpoint(spec: ModelSpec, folder: Path, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return FAKES[spec.adapter](spec, folder, seed)


def _rehash(slot: CheckpointFile, path: Path) -> CheckpointFile:
    hashes = checkpoints.hash_file(path)
    if slot.sha256:
        return replace(slot, sha256=hashes.sha256, git_blob=None, size=hashes.size, alternatives=())
    if slot.git_blob:
        return replace(slot, git_blob=hashes.git_blob, size=hashes.size, alternatives=())
    return replace(slot, alternatives=())


def surrogate_spec(spec: ModelSpec, files: list[Path]) -> ModelSpec:
    """``spec`` with each slot's published hash replaced by the matching fake file's hash; a
    fake named like one of the slot's alternatives (e.g. the .pt pickle) becomes the slot."""
    slots = []
    for slot, path in zip(spec.checkpoints, files):
        variant = next((v for v in (slot, *slot.alternatives) if v.name == path.name), slot)
        slots.append(_rehash(variant, path))
    return replace(spec, checkpoints=tuple(slots))


def register_surrogate(spec: ModelSpec, files: list[Path]) -> ModelSpec:
    """Register fake files through the real checkpoint code; returns the spec that loads them."""
    surrogate = surrogate_spec(spec, files)
    for index, path in enumerate(files):
        checkpoints.register_local(surrogate, index, path)
    return surrogate
