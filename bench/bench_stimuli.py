"""Benchmark: import a ZIP of N 256x256 JPEGs through core.workflows.stimuli.import_files.

Usage: python bench/bench_stimuli.py [--sizes 500 2000] [--tracemalloc]

Each size runs in a fresh child process (peak RSS is per process), importing a ZIP written to
disk beforehand into a new temporary SQLite file and blob folder. Reported per size: import
seconds (including the commit), the longest write transaction (how long other writers would
wait for SQLite's write lock), RSS before the import, peak RSS during it, and with
--tracemalloc the peak Python-heap allocation of the import (slower). Peak memory should not
grow with the number of images. Target (issue 2): 2,000 images in under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.access import Role

ROOT = Path(__file__).resolve().parents[1]


def make_zip(path: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` distinct 256x256 JPEGs (gradients, shapes, noise) into a ZIP; returns bytes."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 256)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(n):
            start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            gradient = start + (end - start) * ramp[:, None, None]
            pixels = np.broadcast_to(gradient, (256, 256, 3)) + rng.normal(0, 12, (256, 256, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            for _ in range(4):
                x, y = rng.integers(0, 200, 2)
                w, h = rng.integers(20, 120, 2)
                draw.ellipse((int(x), int(y), int(x + w), int(y + h)),
                             fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            archive.writestr(f"set{index % 10}/img_{index:05d}.jpg", buffer.getvalue())
    return path.stat().st_size


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def child(zip_path: Path, use_tracemalloc: bool) -> dict:
    """Import ``zip_path`` into a fresh database; runs inside the child process."""
    import tracemalloc

    from core.workflows.stimuli import import_files
    from db.engine import make_engine, make_sessionmaker
    from db.stimuli import create_study

    from write_locks import WriteLockTimer

    engine = make_engine()
    factory = make_sessionmaker(engine)
    with factory.begin() as session:
        study_id = create_study(session, "bench", actor=Role.OPERATOR).id
    before = rss_mb()
    if use_tracemalloc:
        tracemalloc.start()
    timer = WriteLockTimer(engine)
    started = time.perf_counter()
    with factory.begin() as session:
        report = import_files(session, study_id, [(zip_path.name, zip_path)], actor=Role.OPERATOR)
    seconds = time.perf_counter() - started
    heap = tracemalloc.get_traced_memory()[1] / 2**20 if use_tracemalloc else None
    return {
        "added": len(report.added), "errors": len(report.errors), "seconds": round(seconds, 2),
        "longest_write_s": round(timer.longest, 3),
        "rss_before_mb": round(before, 1), "rss_peak_mb": round(rss_mb(), 1),
        "heap_peak_mb": None if heap is None else round(heap, 1),
    }


def run_size(n: int, folder: Path, use_tracemalloc: bool) -> dict:
    zip_path = folder / f"stimuli_{n}.zip"
    size = make_zip(zip_path, n)
    data = folder / f"data_{n}"
    env = {**os.environ, "FACEAGREE_DATA_DIR": str(data),
           "FACEAGREE_DB_URL": f"sqlite:///{data / 'bench.sqlite'}"}
    command = [sys.executable, __file__, "--child", str(zip_path)]
    if use_tracemalloc:
        command.append("--tracemalloc")
    output = subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return {"images": n, "zip_mb": round(size / 2**20, 1), **json.loads(output.stdout.splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(child(args.child, args.tracemalloc)))
        return
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            result = run_size(n, Path(folder), args.tracemalloc)
            print(
                f"{result['images']:>6} images, ZIP {result['zip_mb']:>6} MB: "
                f"{result['seconds']:>6.2f} s ({result['images'] / result['seconds']:.0f} img/s), "
                f"added {result['added']}, errors {result['errors']}, "
                f"longest write transaction {result['longest_write_s']:.3f} s, "
                f"RSS before {result['rss_before_mb']} MB, peak {result['rss_peak_mb']} MB"
                + (f", Python heap peak {result['heap_peak_mb']} MB" if args.tracemalloc else "")
            )


if __name__ == "__main__":
    main()
