"""A typo must not choose the scale (issue 10, item 2): robust suggestions, the study's earlier
scales, and an explicit confirmation when a batch's scale differs, on the command line."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.__main__ import main
from core.ratings.scales import PRESETS, Scale, scale_change, suggest_scale

STUDY = "typo study"


def test_one_typo_is_flagged_not_stretching_the_scale() -> None:
    values = [v % 9 + 1 for v in range(479)] + [12]
    suggestion = suggest_scale(values)
    assert suggestion.scale == PRESETS["sam9"]
    assert suggestion.outliers == (12.0,)
    assert "12" in suggestion.text and "typo" in suggestion.text


def test_many_values_outside_a_preset_choose_the_wider_one() -> None:
    values = [v % 9 + 1 for v in range(100)] + [40, 60, 80]
    assert suggest_scale(values).scale == PRESETS["0..100"]


def test_a_tiny_file_has_no_outliers_to_leave_out() -> None:
    assert suggest_scale([3, 12]).scale == PRESETS["0..100"]


def test_the_study_earlier_scale_comes_first_and_flags_values_outside_it() -> None:
    earlier = [PRESETS["sam9"], PRESETS["likert7"], PRESETS["sam9"]]
    suggestion = suggest_scale([2, 5, 8, 30], earlier)
    assert suggestion.scale == PRESETS["sam9"]
    assert suggestion.source == "study's earlier batches"
    assert suggestion.outliers == (30.0,)


def test_scale_change_names_both_scales_and_accepts_the_same_bounds() -> None:
    earlier = [PRESETS["sam9"]]
    assert scale_change("valence", Scale(1, 9), earlier) is None
    assert scale_change("valence", PRESETS["sam9"], []) is None
    message = scale_change("valence", PRESETS["0..100"], earlier)
    assert "slider 0..100" in message and "SAM 1-9" in message


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def study(db_url: str, tmp_path: Path) -> str:
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        (folder / f"face_{i}.png").write_bytes(png(i))
    assert main(["--db", db_url, "import-stimuli", "--study", STUDY, "--create", "--key", "stem", str(folder)]) == 0
    return db_url


def ratings_file(tmp_path: Path, name: str, typo: bool) -> Path:
    rows = ["rater,stimulus,valence"]
    rows += [f"p{r},face_{s},{r % 9 + 1}" for r in range(9) for s in range(3)]
    if typo:
        rows[1] = "p0,face_0,12"
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_cli_names_the_missing_scale_flag_and_suggests_a_value(study: str, tmp_path: Path, capsys) -> None:
    path = ratings_file(tmp_path, "first.csv", typo=True)
    assert main(["--db", study, "import-ratings", "--study", STUDY, str(path)]) == 2
    error = capsys.readouterr().err
    assert "pass --valence-scale" in error and "--valence-scale sam9" in error
    assert "1 value outside it (12)" in error


def test_cli_refuses_a_scale_unlike_earlier_batches_until_new_scale(study: str, tmp_path: Path, capsys) -> None:
    first = ratings_file(tmp_path, "first.csv", typo=False)
    assert main(["--db", study, "import-ratings", "--study", STUDY, str(first), "--valence-scale", "sam9"]) == 0
    second = ratings_file(tmp_path, "second.csv", typo=True)
    argv = ["--db", study, "import-ratings", "--study", STUDY, str(second), "--valence-scale", "0..100"]
    assert main(argv) == 2
    assert "pass --new-scale" in capsys.readouterr().err
    assert main([*argv, "--new-scale"]) == 0


def test_cli_refusal_names_the_partial_flag(study: str, tmp_path: Path, capsys) -> None:
    path = ratings_file(tmp_path, "typo.csv", typo=True)
    assert main(["--db", study, "import-ratings", "--study", STUDY, str(path), "--valence-scale", "sam9"]) == 1
    captured = capsys.readouterr()
    assert "1 row with problems" in captured.out
    assert "pass --partial" in captured.err and "(or rerun" not in captured.err
