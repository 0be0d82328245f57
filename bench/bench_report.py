"""Time the full agreement report: 2,000 stimuli x 50 raters x 8 models, 1,000 resamples.

Synthetic data from ``core.agreement.synthetic`` (seeded). Target: under 10 s on a 2-core
machine. Run: ``python bench/bench_report.py [--stimuli 2000 --raters 50 --models 8 --boot 1000]``;
``--profile`` prints the top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.agreement.report import build_report  # noqa: E402
from core.agreement.synthetic import synthetic_study  # noqa: E402

TARGET_SECONDS = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stimuli", type=int, default=2000)
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

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
    print(f"build_report: best {best:.2f} s, runs {', '.join(f'{t:.2f}' for t in timings)} s; "
          f"{len(tables)} tables, {rows} rows; target < {TARGET_SECONDS:.0f} s: "
          f"{'met' if best < TARGET_SECONDS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
