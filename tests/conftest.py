"""Shared fixtures: a real database through the production engine factory, a data folder.

Tests marked ``backends`` get ``db_url`` twice: a fresh SQLite file and a fresh database (CREATE
DATABASE) in a throwaway PostgreSQL cluster started once per session (tests/pg_cluster.py); the
PostgreSQL case is skipped, with the reason, when no server can be started here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.engine import DATA_DIR_ENV, DB_URL_ENV, make_engine, make_sessionmaker
from tests import pg_cluster

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("backends"):
        metafunc.parametrize("db_url", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def postgres() -> pg_cluster.Cluster | pg_cluster.ClusterUnavailable:
    """The session's PostgreSQL cluster, or the reason none could be started."""
    try:
        cluster = pg_cluster.start()
    except pg_cluster.ClusterUnavailable as error:
        yield error
        return
    yield cluster
    cluster.stop()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder that the app and core use for blobs, checkpoints and the database."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    monkeypatch.setenv(DB_URL_ENV, f"sqlite:///{folder / 'test.sqlite'}")
    return folder


@pytest.fixture
def db_url(request: pytest.FixtureRequest, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database: SQLite by default, PostgreSQL too for tests marked ``backends``."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite:///{data_dir / 'test.sqlite'}"
        return
    cluster = request.getfixturevalue("postgres")
    if isinstance(cluster, pg_cluster.ClusterUnavailable):
        pytest.skip(f"PostgreSQL not available: {cluster}")
    url = cluster.create_database()
    monkeypatch.setenv(DB_URL_ENV, url)
    yield url
    cluster.drop_database(url)


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


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module (tests/browser_app.py)."""
    from tests.browser_app import CHROMIUM, launch_chromium

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()
