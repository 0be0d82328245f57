"""Studies of random images and a tiny ONNX card model, for job and worker tests (also used by
bench/bench_jobs.py and by worker subprocesses through the CLI)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from core.access import Role
from core.io.storage import store_bytes
from core.workflows import catalog
from db.models import Stimulus, Study
from tests.test_card_models import TinyNet, card_text, onnx_bytes


def png(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def make_image_study(sessions: sessionmaker[Session], n: int, *, size: int = 48,
                     name: str | None = None) -> int:
    """A study of ``n`` random pre-cropped PNGs (no face detection needed); returns its id."""
    with sessions.begin() as session:
        study = Study(name=name or f"images-{n}-{size}")
        session.add(study)
        session.flush()
        for index in range(n):
            data = png(index, size)
            session.add(Stimulus(
                study_id=study.id, path=f"img{index:04d}.png", sha256=store_bytes(data),
                media_type="image/png", width=size, height=size, thumbnail=b"", precropped=True,
            ))
        return study.id


def register_tiny_model(sessions: sessionmaker[Session], model_id: str = "tiny") -> str:
    """Register the tiny ONNX card model (random weights) in the database; returns its id."""
    with sessions.begin() as session:
        catalog.register_card(session, card_text(model_id), onnx_bytes(TinyNet()), actor=Role.OPERATOR)
    return model_id
