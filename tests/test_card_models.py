"""Models without code: model card + ONNX/TorchScript file, validated, stored, run like built-ins."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.access import Role
from core.models import card, checkpoints, registry
from core.models.card import CardError
from core.workflows import catalog
from db.models import RegisteredModel
from tests.model_fakes import astronaut

ROOT = Path(__file__).resolve().parents[1]
SEVEN = ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"]


class TinyNet(nn.Module):
    """A real (tiny) CNN: 7 emotion logits, then valence and arousal."""

    def __init__(self, extra: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=4)
        self.head = nn.Linear(8, 7 + extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class TupleNet(TinyNet):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = super().forward(x)
        return out[:, :7], 3 * out[:, 7:]


def onnx_bytes(net: nn.Module, size: int = 32, output: str = "output") -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.eval(), torch.zeros(1, 3, size, size), buffer, opset_version=17,
                          input_names=["pixels"], output_names=[output],
                          dynamic_axes={"pixels": {0: "b"}, output: {0: "b"}}, dynamo=False)
    return buffer.getvalue()


def torchscript_bytes(net: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(net.eval(), torch.zeros(1, 3, 32, 32)), buffer)
    return buffer.getvalue()


def card_text(model_id: str = "tiny", fmt: str = "onnx", **outputs: str) -> str:
    layout = {"scores": "output[0:7]", "valence": "output[7]", "arousal": "output[8]", **outputs}
    lines = "\n".join(f'{key} = "{value}"' for key, value in layout.items())
    return f"""
id = "{model_id}"
name = "Tiny test model"
license = "MIT"
labels = {SEVEN!r}

[file]
format = "{fmt}"

[input]
size = 32
colour = "RGB"
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]

[outputs]
{lines}
"""


def test_onnx_card_runs_through_the_registry(sessions, data_dir: Path) -> None:
    data = onnx_bytes(TinyNet())
    with sessions.begin() as session:
        spec = catalog.register_card(session, card_text(), data, actor=Role.OPERATOR)
    assert spec.source == "card" and spec.params == sum(p.numel() for p in TinyNet().parameters())
    with sessions.begin() as session:
        spec = catalog.get_spec("tiny", session)
        row = session.get(RegisteredModel, "tiny")
    assert row.checkpoint_sha256 == hashlib.sha256(data).hexdigest()
    assert checkpoints.checkpoint_status(spec).state == "ready"
    assert checkpoints.weights_fingerprint(spec) == row.checkpoint_sha256
    adapter = registry.load_adapter(spec)
    image, face = astronaut()
    batch = np.stack([adapter.prepare(image, face)] * 2)
    assert batch.shape == (2, 3, 32, 32)
    raw = adapter.forward(batch)
    expected = TinyNet().eval()(torch.from_numpy(batch)).detach().numpy()
    np.testing.assert_allclose(raw["output"], expected, rtol=1e-4, atol=1e-5)
    result = adapter.decode(raw)[0]
    native = SEVEN[int(expected[0, :7].argmax())]
    assert result.label == spec.canonical_labels[SEVEN.index(native)]
    assert set(result.probs) == {"neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"}
    assert result.valence == pytest.approx(float(expected[0, 7]), abs=1e-5)


def test_torchscript_card_with_tuple_outputs_and_clipping(sessions, data_dir: Path) -> None:
    text = card_text("ts", "torchscript", scores="0[0:7]", valence="1[0]", arousal="1[1]", va_decode="clip")
    with sessions.begin() as session:
        spec = catalog.register_card(session, text, torchscript_bytes(TupleNet()), actor=Role.OPERATOR)
    adapter = registry.load_adapter(spec)
    batch = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32) * 50
    raw = adapter.forward(batch)
    assert set(raw) == {"0", "1"}
    assert np.abs(raw["1"]).max() > 1  # so clipping is exercised
    for result in adapter.decode(raw):
        assert -1.0 <= result.valence <= 1.0 and -1.0 <= result.arousal <= 1.0


def test_bin_expectation_decoding(sessions, data_dir: Path) -> None:
    values = np.zeros((3, 20))
    values[0, -1] = 50.0  # all mass on the top bin
    values[1, 0] = 50.0
    decoded = card.decode_va(values, "bins", (-1.0, 1.0))
    assert decoded == pytest.approx([1.0, -1.0, 0.0])  # uniform -> mean of linspace(-1, 1, 20)
    text = card_text("binned", valence="output[7:27]", arousal="output[27:47]", va_decode="bins")
    with sessions.begin() as session:
        spec = catalog.register_card(session, text, onnx_bytes(TinyNet(extra=40)), actor=Role.OPERATOR)
    adapter = registry.load_adapter(spec)
    result = adapter.decode(adapter.forward(np.zeros((1, 3, 32, 32), np.float32)))[0]
    assert -1.0 <= result.valence <= 1.0


@pytest.mark.parametrize(("change", "message"), [
    ({"labels": 'labels = ["Neutral", "Confused"]'}, r"labels not in the canonical vocabulary: \['Confused'\]"),
    ({"scores": 'scores = "output[0:6]"'}, "selects 6 values but `labels` names 7"),
    ({"valence": 'valence = "output[7:9]"'}, "va_decode 'raw' needs one value"),
    ({"colour": 'colour = "YUV"'}, "'YUV' must be 'RGB' or 'BGR'"),
    ({"scores": 'scores = "output(0:7)"'}, "is not an output reference"),
])
def test_card_mistakes_get_precise_messages(sessions, data_dir: Path, change: dict, message: str) -> None:
    text = card_text()
    key, replacement = next(iter(change.items()))
    original = next(line for line in text.splitlines() if line.startswith(f"{key} ="))
    with sessions.begin() as session, pytest.raises(CardError, match=message):
        catalog.register_card(session, text.replace(original, replacement), onnx_bytes(TinyNet()), actor=Role.OPERATOR)


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(CardError) as info:
        card.validate_card({"id": "Bad Id!", "file": {"format": "pickle"}, "input": {"size": 3}, "outputs": {}})
    text = str(info.value)
    for expected in ("`id`", "`name`: is required", "`license`: is required", "`file.format`", "`input.size`", "`input.colour`: is required"):
        assert expected in text


def test_invalid_toml_names_the_line() -> None:
    with pytest.raises(CardError, match="line 2"):
        card.parse_card_text('id = "x"\nname = \n')


def test_file_problems_found_by_the_dry_run(sessions, data_dir: Path) -> None:
    with sessions.begin() as session:
        with pytest.raises(CardError, match="has no output 'logits'"):
            catalog.register_card(session, card_text(scores="logits[0:7]"), onnx_bytes(TinyNet()), actor=Role.OPERATOR)
        with pytest.raises(CardError, match=r"output\[7:8\] lies beyond output 'output' of width 7"):
            catalog.register_card(session, card_text(), onnx_bytes(TinyNet(extra=0)), actor=Role.OPERATOR)
        with pytest.raises(CardError, match="could not be run"):
            catalog.register_card(session, card_text(), b"not an onnx file", actor=Role.OPERATOR)
    assert checkpoints.checkpoint_status(card.card_spec(card.validate_card(card.parse_card_text(card_text())), "0" * 64)).state == "missing"


def test_sha256_in_card_must_match(sessions, data_dir: Path) -> None:
    text = card_text().replace('format = "onnx"', 'format = "onnx"\nsha256 = "' + "ab" * 32 + '"')
    with sessions.begin() as session, pytest.raises(CardError, match="the card expects abab"):
        catalog.register_card(session, text, onnx_bytes(TinyNet()), actor=Role.OPERATOR)


def test_ids_cannot_collide(sessions, data_dir: Path) -> None:
    data = onnx_bytes(TinyNet())
    with sessions.begin() as session:
        with pytest.raises(CardError, match="is a built-in model"):
            catalog.register_card(session, card_text("esr9"), data, actor=Role.OPERATOR)
        catalog.register_card(session, card_text("mine"), data, actor=Role.OPERATOR)
    with sessions.begin() as session:
        with pytest.raises(CardError, match="exists already; choose another id or replace it"):
            catalog.register_card(session, card_text("mine"), data, actor=Role.OPERATOR)
        replaced = catalog.register_card(session, card_text("mine", valence="output[8]", arousal="output[7]"), data, replace=True, actor=Role.OPERATOR)
    assert replaced.options["layout"]["valence"].start == 8


def test_card_model_is_listed_with_its_source(sessions, data_dir: Path) -> None:
    with sessions.begin() as session:
        catalog.register_card(session, card_text("listed"), onnx_bytes(TinyNet()), actor=Role.OPERATOR)
        session.add(RegisteredModel(id="facereader", source="imported", card={"name": "FaceReader 9", "labels": ["happiness"], "va": True}))
    with sessions.begin() as session:
        table = catalog.describe_models(session)
        assert [s.id for s in catalog.all_specs(session)][-1] == "listed"
        with pytest.raises(KeyError, match="imported predictions and cannot be run"):
            catalog.get_spec("facereader", session)
    rows = table.set_index("model_id")
    assert rows.loc["listed", "source"] == "card" and rows.loc["listed", "classes"] == 7
    assert rows.loc["facereader", "source"] == "imported" and rows.loc["facereader", "va_output"] == "yes (imported)"


def test_preprocessing_version_follows_the_card() -> None:
    first = card.validate_card(card.parse_card_text(card_text()))
    second = card.validate_card(card.parse_card_text(card_text().replace("size = 32", "size = 48")))
    assert first.preprocessing.version.startswith("card-")
    assert first.preprocessing.version != second.preprocessing.version


def test_json_cards_are_accepted() -> None:
    import json
    import tomllib

    data = tomllib.loads(card_text())
    assert card.validate_card(card.parse_card_text(json.dumps(data))).id == "tiny"


def test_example_template_card_is_valid() -> None:
    text = (ROOT / "examples" / "behaviour4all.card.toml").read_text(encoding="utf-8")
    parsed = card.validate_card(card.parse_card_text(text))
    assert parsed.id == "behaviour4all" and parsed.fmt == "onnx"
    assert "TEMPLATE" in parsed.data["name"]
