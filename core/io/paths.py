"""Where the app keeps its files: one data folder for the database, blobs and checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "FACEAGREE_DATA_DIR"


def data_dir() -> Path:
    """Folder holding the default database, uploaded blobs and model checkpoints."""
    path = Path(os.environ.get(DATA_DIR_ENV, "data")).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
