"""ESR-9: voting and its tie rule, V/A from ReLU(logits), BGR input, legacy-format loading."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.faces.crops import Face
from core.models import checkpoints, registry
from core.models.adapters import esr9
from core.models.nets.esr9 import ESR9, Branch, SharedBase
from tests.model_fakes import astronaut, fake_esr9, register_surrogate

SPEC = esr9.SPECS[0]


def branch_logits(winners: list[int]) -> np.ndarray:
    """(9, 8) logits whose row argmaxes are ``winners``."""
    logits = np.zeros((9, 8), np.float32)
    logits[np.arange(9), winners] = 5.0
    return logits


def test_plurality_vote() -> None:
    votes, winner = esr9.vote(branch_logits([3, 3, 3, 3, 1, 1, 0, 7, 7]))
    assert votes.tolist() == [1, 2, 0, 4, 0, 0, 0, 2] and winner == 3


@pytest.mark.parametrize(("winners", "expected"), [
    ([0, 0, 0, 1, 1, 1, 2, 2, 2], 0),  # three-way tie -> lowest index
    ([6, 6, 6, 5, 5, 5, 1, 2, 3], 5),
    ([7, 7, 4, 4, 0, 1, 2, 3, 6], 4),
])
def test_ties_go_to_the_lowest_label_index(winners: list[int], expected: int) -> None:
    assert esr9.vote(branch_logits(winners))[1] == expected


@given(st.lists(st.integers(0, 7), min_size=9, max_size=9))
def test_vote_winner_is_the_lowest_most_voted_label(winners: list[int]) -> None:
    votes, winner = esr9.vote(branch_logits(winners))
    counts = [winners.count(label) for label in range(8)]
    assert votes.tolist() == counts
    assert winner == min(label for label in range(8) if counts[label] == max(counts))


def test_decode_votes_shares_mean_va_and_extras() -> None:
    logits = branch_logits([1, 1, 1, 1, 1, 0, 0, 2, 3])
    affect = np.stack([np.linspace(-0.8, 0.8, 9), np.linspace(0.0, 0.4, 9)], axis=1).astype(np.float32)
    adapter = esr9.ESR9Adapter(SPEC, net=None)
    (result,) = adapter.decode({"logits": logits[None], "affect": affect[None]})
    assert result.label == "happiness"  # native index 1 is "Happy"
    assert result.probs["happiness"] == pytest.approx(5 / 9) and result.probs["neutral"] == pytest.approx(2 / 9)
    assert result.probs["contempt"] == 0.0 and sum(result.probs.values()) == pytest.approx(1.0)
    assert result.valence == pytest.approx(0.0, abs=1e-7) and result.arousal == pytest.approx(0.2)
    assert result.extras["branch_labels"][:6] == ["happiness"] * 5 + ["neutral"]
    assert sum(result.extras["mean_softmax"].values()) == pytest.approx(1.0)
    assert result.extras["branch_valence"][0] == pytest.approx(-0.8)


def test_va_are_computed_from_relu_of_the_logits() -> None:
    """Branch: fc_dimensional(ReLU(fc(x))): negative logits contribute nothing."""
    branch = Branch().eval()
    with torch.no_grad():
        branch.fc.weight.zero_()
        branch.fc.bias.copy_(torch.tensor([-3.0, 2.0, 0, 0, 0, 0, 0, 1.0]))
        branch.fc_dimensional.weight.zero_()
        branch.fc_dimensional.weight[:, 0] = torch.tensor([10.0, 10.0])  # would show the -3 if not ReLU'd
        branch.fc_dimensional.weight[:, 1] = torch.tensor([0.5, -0.25])
        branch.fc_dimensional.weight[:, 7] = torch.tensor([1.0, 1.0])
        branch.fc_dimensional.bias.copy_(torch.tensor([0.1, 0.2]))
        logits, affect = branch(torch.randn(2, 128, 20, 20))
    assert logits[0].tolist() == [-3.0, 2.0, 0, 0, 0, 0, 0, 1.0]
    assert affect[0].tolist() == pytest.approx([0.1 + 1.0 + 1.0, 0.2 - 0.5 + 1.0])


def test_shapes_and_parameter_count() -> None:
    net = ESR9().eval()
    assert sum(p.numel() for p in net.parameters()) == SPEC.params == 20_349_546
    assert net.base(torch.zeros(1, 3, 96, 96)).shape == (1, 128, 20, 20)
    logits, affect = net(torch.zeros(2, 3, 96, 96))
    assert logits.shape == (2, 9, 8) and affect.shape == (2, 9, 2)


def test_prepare_is_bgr_cv2_resized_and_unnormalised() -> None:
    """controller/cvision.py: BGR frame crop -> cv2.resize((96, 96)) -> ToTensor, mean 0, std 1."""
    image, face = astronaut()
    ours = esr9.ESR9Adapter(SPEC, net=None).prepare(image, face)
    x1, y1, x2, y2 = np.asarray(face.box).astype(int)  # cvision.py:81, 112: integer box
    bgr = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_RGB2BGR)
    official = cv2.resize(bgr, (96, 96)).transpose(2, 0, 1).astype(np.float32) / 255.0
    assert ours.shape == (3, 96, 96)
    np.testing.assert_allclose(ours, official, atol=1e-6)
    red = np.zeros((100, 100, 3), np.uint8)
    red[..., 0] = 255
    planes = esr9.ESR9Adapter(SPEC, net=None).prepare(red, Face.whole_image(red))
    assert planes[2].min() == 1.0 and planes[0].max() == 0.0  # red lands in the last plane


@pytest.mark.slow
def test_legacy_files_through_registry(data_dir: Path, tmp_path: Path) -> None:
    files = fake_esr9(SPEC, tmp_path)
    assert files[0].read_bytes()[:2] == b"\x80\x02"  # legacy torch format is a bare pickle, not a zip
    surrogate = register_surrogate(SPEC, files)
    assert len(checkpoints.resolve(surrogate)) == 10
    adapter = registry.load_adapter(surrogate)
    image, face = astronaut()
    batch = np.stack([adapter.prepare(image, face)] * 2)
    raw = adapter.forward(batch)
    assert raw["logits"].shape == (2, 9, 8) and raw["affect"].shape == (2, 9, 2)
    torch.manual_seed(0)
    reference = ESR9().eval()
    with torch.no_grad():
        logits, _ = reference(torch.from_numpy(batch))
    np.testing.assert_allclose(raw["logits"], logits.numpy(), rtol=1e-4, atol=1e-5)
    results = adapter.decode(raw)
    assert results[0].label == results[1].label
    assert results[0].probs == pytest.approx(results[1].probs)


def test_branch_file_with_wrong_layout_is_refused(data_dir: Path, tmp_path: Path) -> None:
    files = fake_esr9(SPEC, tmp_path)
    torch.save({"conv1.weight": torch.zeros(1)}, files[4], _use_new_zipfile_serialization=False)
    surrogate = register_surrogate(SPEC, files)
    with pytest.raises(ValueError, match="Net-Branch_4.pt does not fit the ESR-9 layout"):
        registry.load_adapter(surrogate)


def test_spec_pins_every_official_file() -> None:
    names = [slot.name for slot in SPEC.checkpoints]
    assert names == ["Net-Base-Shared_Representations.pt", *(f"Net-Branch_{i}.pt" for i in range(1, 10))]
    assert all(slot.git_blob and len(slot.git_blob) == 40 for slot in SPEC.checkpoints)
    assert all(esr9.COMMIT in slot.url for slot in SPEC.checkpoints)


WEIGHTS_DIR = Path(os.environ.get("FACEAGREE_WEIGHTS_DIR", "/nonexistent"))


@pytest.mark.weights
def test_official_base_file_loads_strictly_with_weights_only(data_dir: Path) -> None:
    """The published base file (1,506,551 bytes, git blob b24ff4f0...) verifies and loads."""
    source = WEIGHTS_DIR / esr9.BASE_FILE
    if not source.exists():
        pytest.skip("Net-Base-Shared_Representations.pt not in FACEAGREE_WEIGHTS_DIR")
    path = checkpoints.register_local(SPEC, 0, source)
    assert checkpoints.hash_file(path).sha256 == esr9.BASE_SHA256
    esr9._load_strict(SharedBase(), path)  # weights_only=True, map_location cpu (saved on CUDA)
