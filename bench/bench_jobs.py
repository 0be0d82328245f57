"""Benchmark: jobs and workers, and the 100k-rating import on PostgreSQL vs SQLite.

1. latency: a worker thread polling an empty queue (default settings); time from enqueue to the
   first progress row the job shows to every session.
2. throughput: one model run (the tiny ONNX card model of the tests, random weights, pre-cropped
   images) through a worker vs calling run_model directly, each on a fresh database; best of
   ``--repeat``. The tiny network makes the worker's own overhead (progress writes, heartbeats)
   as visible as it can be. Target: worker >= 0.95x direct.
3. import: bench/bench_ratings.py's 100,000 ratings stored in one transaction, SQLite file vs a
   throwaway PostgreSQL cluster (tests/pg_cluster.py).

    python bench/bench_jobs.py [--images 400] [--size 96] [--repeat 3] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from bench.bench_ratings import add_stimuli, synthetic_csv  # noqa: E402
from core.access import Role  # noqa: E402
from core.workflows import inference  # noqa: E402
from core.ratings.layouts import detect_mapping, prepare_ratings  # noqa: E402
from core.ratings.scales import PRESETS  # noqa: E402
from core.io.tabular import read_table  # noqa: E402
from core.workflows import jobs  # noqa: E402
from core.workflows.worker import Worker, WorkerSettings  # noqa: E402
from db.engine import DATA_DIR_ENV, make_engine, make_sessionmaker  # noqa: E402
from db.models import Job  # noqa: E402
from db.queries import get_or_create_study  # noqa: E402
from db.ratings import import_batch, stimulus_index  # noqa: E402
from tests import pg_cluster  # noqa: E402
from tests.job_helpers import make_image_study, register_tiny_model  # noqa: E402


class Databases:
    """Fresh databases on one backend: SQLite files in a temp dir, or a PostgreSQL cluster."""

    def __init__(self, backend: str, folder: str) -> None:
        self.backend, self.folder, self.count = backend, folder, 0
        self.cluster = pg_cluster.start() if backend == "postgresql" else None

    def fresh(self):
        self.count += 1
        url = (self.cluster.create_database() if self.cluster
               else f"sqlite:///{self.folder}/bench{self.count}.sqlite")
        return make_sessionmaker(make_engine(url))

    def close(self) -> None:
        if self.cluster:
            self.cluster.stop()


def first_progress_latency(dbs: Databases, images: int, size: int) -> float:
    factory = dbs.fresh()
    register_tiny_model(factory)
    study_id = make_image_study(factory, images, size=size)
    stop = threading.Event()
    thread = threading.Thread(target=Worker(factory, WorkerSettings(device="cpu")).run_forever,
                              args=(stop,), daemon=True)
    thread.start()
    time.sleep(1.0)  # the worker is idle, polling
    started = time.perf_counter()
    job_id = jobs.enqueue(factory, "model_run", study_id, {"models": ["tiny"]}, actor=Role.OPERATOR)
    while True:
        with factory() as session:
            if session.scalar(select(Job.progress_at).where(Job.id == job_id)) is not None:
                latency = time.perf_counter() - started
                break
        time.sleep(0.005)
    stop.set()
    thread.join()
    return latency


def run_seconds(dbs: Databases, images: int, size: int, through_worker: bool) -> float:
    factory = dbs.fresh()
    register_tiny_model(factory)
    study_id = make_image_study(factory, images, size=size)
    started = time.perf_counter()
    if through_worker:
        jobs.enqueue(factory, "model_run", study_id, {"models": ["tiny"]}, actor=Role.OPERATOR)
        Worker(factory, WorkerSettings(device="cpu")).run_once()
    else:
        inference.run_model(factory, study_id, "tiny", device="cpu", actor=Role.OPERATOR)
    return time.perf_counter() - started


def import_seconds(dbs: Databases) -> float:
    factory = dbs.fresh()
    with factory.begin() as session:
        study_id = get_or_create_study(session, "bench", actor=Role.OPERATOR).id
    add_stimuli(factory, study_id, 2000)
    data = synthetic_csv(2000, 50)
    started = time.perf_counter()
    frame = read_table("ratings.csv", data)
    scales = {"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]}
    with factory.begin() as session:
        index = stimulus_index(session, study_id)
        prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index, scales=scales)
        import_batch(session, study_id, prepared, file_name="ratings.csv", data=data,
                     actor=Role.OPERATOR)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as folder:
        os.environ[DATA_DIR_ENV] = folder
        for backend in backends:
            dbs = Databases(backend, folder)
            try:
                latency = first_progress_latency(dbs, 50, args.size)
                print(f"[{backend}] enqueue -> first progress: {latency:.2f} s", flush=True)
                direct, worker = [], []
                for _ in range(args.repeat):
                    direct.append(run_seconds(dbs, args.images, args.size, through_worker=False))
                    worker.append(run_seconds(dbs, args.images, args.size, through_worker=True))
                best_direct, best_worker = min(direct), min(worker)
                median_ratio = statistics.median(direct) / statistics.median(worker)
                print(f"[{backend}] {args.images} images: run_model {args.images / best_direct:.1f} img/s, "
                      f"worker {args.images / best_worker:.1f} img/s, ratio best {best_direct / best_worker:.3f}"
                      f", median {median_ratio:.3f} "
                      f"(runs: direct {', '.join(f'{s:.2f}' for s in direct)} s; "
                      f"worker {', '.join(f'{s:.2f}' for s in worker)} s)", flush=True)
                imports = [import_seconds(dbs) for _ in range(args.repeat)]
                print(f"[{backend}] import 100,000 ratings: best {min(imports):.2f} s "
                      f"(runs {', '.join(f'{s:.2f}' for s in imports)} s)", flush=True)
            finally:
                dbs.close()


if __name__ == "__main__":
    main()
