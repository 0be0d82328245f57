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
