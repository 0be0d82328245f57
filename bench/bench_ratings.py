"""Benchmark: import 100,000 long-form ratings (2,000 stimuli x 50 raters, 3 dimensions).

Measures the path a user's upload takes: read the CSV (core.io.tabular), detect the mapping,
validate and convert (core.ratings.layouts), and store one batch in chunks of short transactions
(db.ratings; the longest time one of them holds SQLite's write lock is reported too) on a
temporary SQLite file made by the production engine factory. The 2,000 stimuli are inserted
directly with a placeholder thumbnail; this script measures the rating import only.

    python bench/bench_ratings.py [--stimuli 2000] [--raters 50]

Target on the project's 2-core machine: under 10 s in total.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.access import Role
from core.io.tabular import read_table  # noqa: E402
from core.ratings.labels import CANONICAL  # noqa: E402
from core.ratings.layouts import detect_mapping, prepare_ratings  # noqa: E402
from core.ratings.scales import PRESETS  # noqa: E402
from db.engine import DATA_DIR_ENV, make_engine, make_sessionmaker  # noqa: E402
from db.models import Rating, Stimulus  # noqa: E402
from db.queries import get_or_create_study  # noqa: E402
from db.ratings import import_batch_in_chunks, stimulus_index  # noqa: E402
from write_locks import WriteLockTimer  # noqa: E402

PLACEHOLDER_THUMBNAIL = b"\x89PNG\r\n\x1a\n"


def synthetic_csv(n_stimuli: int, n_raters: int, seed: int = 0) -> bytes:
    """A long rating file: rater, stimulus, emotion, valence (SAM 1-9), arousal (SAM 1-9)."""
    rng = np.random.default_rng(seed)
    n = n_stimuli * n_raters
    frame = pd.DataFrame({
        "rater": np.repeat([f"R{r:03d}" for r in range(n_raters)], n_stimuli),
        "stimulus": np.tile([f"face_{s:05d}.jpg" for s in range(n_stimuli)], n_raters),
        "emotion": rng.choice(CANONICAL, size=n),
        "valence": rng.integers(1, 10, size=n),
        "arousal": rng.integers(1, 10, size=n),
    })
    return frame.to_csv(index=False).encode("utf-8")


def add_stimuli(factory, study_id: int, n_stimuli: int) -> None:
    rows = [
        {
            "study_id": study_id, "path": f"face_{s:05d}.jpg", "sha256": f"{s:064x}",
            "media_type": "image/jpeg", "width": 1, "height": 1,
            "thumbnail": PLACEHOLDER_THUMBNAIL,
        }
        for s in range(n_stimuli)
    ]
    with factory.begin() as session:
        session.execute(insert(Stimulus), rows)


def run(n_stimuli: int, n_raters: int) -> dict[str, float]:
    data = synthetic_csv(n_stimuli, n_raters)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        os.environ[DATA_DIR_ENV] = folder
        engine = make_engine(f"sqlite:///{folder}/bench.sqlite")
        factory = make_sessionmaker(engine)
        with factory.begin() as session:
            study_id = get_or_create_study(session, "bench", actor=Role.OPERATOR).id
        add_stimuli(factory, study_id, n_stimuli)

        start = time.perf_counter()
        frame = read_table("ratings.csv", data)
        timings["read"] = time.perf_counter() - start
        with factory() as session:
            index = stimulus_index(session, study_id)
        mark = time.perf_counter()
        mapping = detect_mapping(frame, index)
        prepared = prepare_ratings(
            frame, mapping, index=index,
            scales={"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]},
        )
        timings["validate"] = time.perf_counter() - mark
        assert prepared.ok, prepared.errors.head()
        timer = WriteLockTimer(engine)
        mark = time.perf_counter()
        import_batch_in_chunks(factory, study_id, prepared, file_name="ratings.csv", data=data, actor=Role.OPERATOR)
        timings["store"] = time.perf_counter() - mark
        timings["write_lock"] = timer.longest
        timings["total"] = time.perf_counter() - start
        with factory() as session:
            stored = session.scalar(select(func.count()).select_from(Rating))
        engine.dispose()
    assert stored == n_stimuli * n_raters, stored
    timings["rows"] = stored
    timings["file_mb"] = len(data) / 1e6
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=2000)
    parser.add_argument("--raters", type=int, default=50)
    args = parser.parse_args()
    timings = run(args.stimuli, args.raters)
    print(
        f"{int(timings['rows']):,} ratings ({timings['file_mb']:.1f} MB CSV): "
        f"read {timings['read']:.2f} s, detect+validate {timings['validate']:.2f} s, "
        f"store {timings['store']:.2f} s (write lock held {timings['write_lock']:.2f} s), "
        f"total {timings['total']:.2f} s (target < 10 s); "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    return 0 if timings["total"] < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
