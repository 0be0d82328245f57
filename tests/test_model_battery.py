"""The registry-parametrised battery (cf. timm's tests/test_models.py): for every built-in model,
random weights in the official file format, registered and verified by the real checkpoint code,
loaded through ``registry.load_adapter``, run on a real face photo, then checked for shapes,
label mapping by name and value ranges.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from core.models import checkpoints, registry
from core.ratings.labels import to_canonical
from tests.model_fakes import astronaut, make_fake_checkpoint, register_surrogate

SPECS = registry.builtin_specs()


@pytest.mark.slow
@pytest.mark.parametrize("model_id", sorted(SPECS))
def test_full_pipeline_with_random_weights(model_id: str, data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS[model_id]
    surrogate = register_surrogate(spec, make_fake_checkpoint(spec, tmp_path / "fakes"))
    assert checkpoints.checkpoint_status(surrogate).state == "ready"
    assert re.fullmatch(r"[0-9a-f]{64}", checkpoints.weights_fingerprint(surrogate))
    adapter = registry.load_adapter(surrogate)

    image, face = astronaut()
    prepared = adapter.prepare(image, face)
    assert prepared.dtype == np.float32 and np.isfinite(prepared).all()
    assert prepared.shape == (3, *spec.preprocessing.input_size)
    results = adapter.decode(adapter.forward(np.stack([prepared, prepared])))
    assert len(results) == 2

    for result in results:
        _check_output(spec, result)
        json.dumps(result.extras)  # stored in a JSON column
    assert results[0].label == results[1].label  # batch members do not leak into each other
    adapter.release()


def _check_output(spec, result) -> None:
    if "probs" in spec.outputs:
        assert sorted(result.probs) == sorted(spec.canonical_labels)
        assert spec.canonical_labels == [to_canonical(name) for name in spec.native_labels]
        values = np.array(list(result.probs.values()))
        assert ((values >= 0) & (values <= 1)).all() and values.sum() == pytest.approx(1.0, abs=1e-5)
        assert result.probs[result.label] == max(values)
    else:
        assert result.probs is None and result.label is None
    if "va" in spec.outputs:
        for value in (result.valence, result.arousal):
            assert isinstance(value, float) and math.isfinite(value)
            if spec.va_decode in ("clip", "bins"):
                assert spec.va_range[0] - 1e-6 <= value <= spec.va_range[1] + 1e-6
    if "aus" in spec.outputs:
        assert result.extras
