"""Shared fixtures: a real SQLite file through the production engine factory, a data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.engine import DATA_DIR_ENV, DB_URL_ENV, make_engine, make_sessionmaker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder that the app and core use for blobs, checkpoints and the database."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    monkeypatch.setenv(DB_URL_ENV, f"sqlite:///{folder / 'test.sqlite'}")
    return folder


@pytest.fixture
def db_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'test.sqlite'}"


@pytest.fixture
def sessions(db_url: str) -> sessionmaker[Session]:
    """Session factory on a fresh, migrated SQLite file."""
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


FACENET_WHEEL = "facenet-pytorch==2.6.0"
WHEEL_DIR_ENV = "FACEAGREE_WHEEL_DIR"


@pytest.fixture(scope="session")
def facenet_wheel() -> Path:
    """facenet-pytorch 2.6.0's wheel, which carries the MTCNN weights (never installed).

    Taken from $FACEAGREE_WHEEL_DIR (default ~/.cache/faceagree/wheels), fetched there once with
    `pip download`; the test is skipped when pip cannot reach the registry.
    """
    import os
    import subprocess
    import sys

    folder = Path(os.environ.get(WHEEL_DIR_ENV) or Path.home() / ".cache" / "faceagree" / "wheels")
    found = sorted(folder.glob("facenet_pytorch-2.6.0-*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", FACENET_WHEEL, "--no-deps", "-q"]
        command += ["-d", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        found = sorted(folder.glob("facenet_pytorch-2.6.0-*.whl"))
        if not found:
            why = done.stderr.strip()[-300:]
            pytest.skip(f"pip could not fetch {FACENET_WHEEL} (MTCNN weights): {why}")
    return found[0]


@pytest.fixture
def mtcnn_weights(data_dir: Path, facenet_wheel: Path) -> Path:
    """The verified MTCNN weights installed into the test data folder."""
    from core.faces.detection import install_mtcnn_from_wheel, mtcnn_dir

    install_mtcnn_from_wheel(facenet_wheel)
    return mtcnn_dir()
