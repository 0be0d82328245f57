"""`python -m core install-mtcnn`: weights from the facenet-pytorch wheel, verified, or a clear error."""

from __future__ import annotations

from pathlib import Path

from core.__main__ import main
from core.faces.detection import mtcnn_status


def test_install_from_wheel_makes_mtcnn_ready(data_dir: Path, facenet_wheel: Path, capsys) -> None:
    assert mtcnn_status().state == "missing"
    assert main(["install-mtcnn", "--wheel", str(facenet_wheel)]) == 0
    assert mtcnn_status().state == "ready"
    assert "verified" in capsys.readouterr().out


def test_install_from_a_non_wheel_fails_with_instructions(data_dir: Path, tmp_path: Path, capsys) -> None:
    fake = tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"
    fake.write_bytes(b"not a zip")
    assert main(["install-mtcnn", "--wheel", str(fake)]) == 1
    assert "pip download facenet-pytorch==2.6.0" in capsys.readouterr().err
    assert mtcnn_status().state == "missing"
