"""Time the full agreement report: 2,000 stimuli x 50 raters x 8 models, 1,000 resamples.

Synthetic data from ``core.agreement.synthetic`` (seeded). Targets on a 2-core machine: under
10 s at the default size, under 15 s at ``--stimuli 20000 --raters 100`` (2 million ratings).
Run: ``python bench/bench_report.py [--stimuli 2000 --raters 50 --models 8 --boot 1000]``;
``--profile`` prints the top functions by cumulative time. The peak memory printed is this
process's (data generation included).

``--vote-study`` times the command line end to end on a FER+-like study instead: 35,708
stimuli with 10 votes each over 8 emotions (votes layout), imported by ``python -m core
import-ratings`` into a fresh SQLite file, then ``python -m core report --boot 0`` and
``--boot 1000 --no-figures`` as subprocesses, each with its wall time and peak RSS. Target:
under 10 s and 1 GB each. ``--stimuli`` and ``--models`` apply; ``--keep DIR`` keeps the files.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.agreement.report import build_report  # noqa: E402
from core.agreement.synthetic import synthetic_study  # noqa: E402

TARGET_SECONDS = 10.0
LARGE_TARGET_SECONDS = 15.0  # from 1 million ratings on
LARGE_RATINGS = 1_000_000
VOTE_TARGET_SECONDS, VOTE_TARGET_MB = 10.0, 1024.0
FERPLUS_STIMULI, FERPLUS_VOTES = 35_708, 10
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stimuli", type=int, help="default 2000 (35708 with --vote-study)")
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--vote-study", action="store_true",
                        help="time import and report of a FER+-like vote study through the CLI")
    parser.add_argument("--keep", type=Path, help="--vote-study: folder for the database and reports")
    args = parser.parse_args(argv)
    if args.vote_study:
        args.stimuli = args.stimuli or FERPLUS_STIMULI
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            return vote_study_bench(args, args.keep)
        with tempfile.TemporaryDirectory() as folder:
            return vote_study_bench(args, Path(folder))
    args.stimuli = args.stimuli or 2000

    ratings, predictions, stimuli, models = synthetic_study(
        args.stimuli, args.raters, args.models, seed=args.seed
    )
    print(f"{len(ratings)} ratings, {len(predictions)} predictions, {args.boot} resamples")

    def run() -> dict:
        return build_report(ratings, predictions, stimuli, models, n_boot=args.boot, seed=args.seed)

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    timings = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        tables = run()
        timings.append(time.perf_counter() - start)
    rows = sum(len(t) for t in tables.values())
    best = min(timings)
    target = LARGE_TARGET_SECONDS if len(ratings) >= LARGE_RATINGS else TARGET_SECONDS
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"build_report: best {best:.2f} s, runs {', '.join(f'{t:.2f}' for t in timings)} s; "
          f"{len(tables)} tables, {rows} rows; target < {target:.0f} s: "
          f"{'met' if best < target else 'MISSED'}; peak RSS {peak_mb:.0f} MB; "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


def vote_study_bench(args: argparse.Namespace, folder: Path) -> int:
    """Import a FER+-like vote file through the CLI and time the report commands."""
    url = f"sqlite:///{folder / 'bench.sqlite'}"
    votes_file = folder / "votes.csv"
    build_vote_study(url, votes_file, args.stimuli, args.models, args.seed)
    print(f"{args.stimuli} stimuli x {FERPLUS_VOTES} votes, {args.models} models; load average "
          f"{os.getloadavg()[0]:.2f}")
    cli = [sys.executable, "-m", "core", "--db", url]
    timed(cli + ["import-ratings", "--study", "ferplus", "--layout", "votes", str(votes_file)],
          "import-ratings")
    met = True
    for boot, extra in ((0, []), (args.boot, ["--no-figures"])):
        for run in range(args.repeat):
            seconds, peak_mb = timed(cli + ["report", "--study", "ferplus", "--out",
                                            str(folder / f"report-{boot}-{run}"), "--boot", str(boot)]
                                     + extra, f"report --boot {boot} {' '.join(extra)}".strip())
            met &= seconds < VOTE_TARGET_SECONDS and peak_mb < VOTE_TARGET_MB
    print(f"target < {VOTE_TARGET_SECONDS:.0f} s and < {VOTE_TARGET_MB:.0f} MB per report: "
          f"{'met' if met else 'MISSED'}")
    return 0


def timed(command: list[str], name: str) -> tuple[float, float]:
    """Run ``command`` in the repository root; print and return (seconds, peak RSS in MB)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed:\n{stderr.decode(errors='replace')}")
    peak_mb = usage.ru_maxrss / 1024
    print(f"{name}: {seconds:.2f} s, peak RSS {peak_mb:.0f} MB")
    return seconds, peak_mb


def build_vote_study(url: str, votes_file: Path, n_stimuli: int, n_models: int, seed: int) -> None:
    """A study of ``n_stimuli`` image rows (no image bytes: the report never reads them), model
    predictions stored directly, and a votes file to import: 10 votes per stimulus, mostly for
    one emotion, like FER+."""
    from datetime import datetime, timezone

    import numpy as np
    import pandas as pd
    from sqlalchemy import insert

    from core.access import Role
    from db.engine import make_engine, make_sessionmaker
    from db.models import Prediction, Stimulus
    from db.queries import get_or_create_study

    rng = np.random.default_rng(seed)
    names = [f"fer{i:07d}.png" for i in range(n_stimuli)]
    shas = [f"{i:064x}" for i in range(n_stimuli)]
    dominant = rng.integers(0, len(FERPLUS_COLUMNS), n_stimuli)
    shares = np.full((n_stimuli, len(FERPLUS_COLUMNS)), 0.3 / (len(FERPLUS_COLUMNS) - 1))
    shares[np.arange(n_stimuli), dominant] = 0.7
    votes = np.array([rng.multinomial(FERPLUS_VOTES, row) for row in shares])
    pd.DataFrame(votes, columns=FERPLUS_COLUMNS).assign(image=names)[
        ["image"] + FERPLUS_COLUMNS].to_csv(votes_file, index=False)
    now = datetime.now(timezone.utc)
    factory = make_sessionmaker(make_engine(url))
    with factory.begin() as session:
        study_id = get_or_create_study(session, "ferplus", actor=Role.OPERATOR).id
        session.execute(insert(Stimulus), [
            {"study_id": study_id, "path": name, "sha256": sha, "media_type": "image/png",
             "width": 48, "height": 48, "thumbnail": b"", "precropped": True, "created_at": now}
            for name, sha in zip(names, shas)])
        for m in range(n_models):
            probs = rng.dirichlet(np.ones(len(FERPLUS_COLUMNS)), n_stimuli)
            labels = np.array(FERPLUS_COLUMNS)[probs.argmax(axis=1)]
            session.execute(insert(Prediction), [
                {"stimulus_sha256": sha, "study_id": study_id, "model_id": f"bench-model-{m}",
                 "checkpoint_sha256": "0" * 64, "preprocessing": "bench", "detector": "none",
                 "status": "ok", "label": label, "created_at": now,
                 "probs": dict(zip(FERPLUS_COLUMNS, row.round(4).tolist()))}
                for sha, label, row in zip(shas, labels, probs)])


if __name__ == "__main__":
    sys.exit(main())
