"""Time the analysis pages: first render (computes the report) and re-renders from the cache.

Seeds a temporary SQLite database with two studies of simulated data (default 500 stimuli x 20
raters x 4 models each, 1,000 bootstrap resamples as the page default), then runs
pages/4_Agreement.py through Streamlit's AppTest: once cold (imports and report), once on the
second study (report only), again in the same session (a widget interaction re-render), and in
a fresh session (another browser tab). The other analysis pages are then timed on the
warm cache. Target: a re-render from cache under 1 s.

    python bench/bench_pages.py [--stimuli 500 --raters 20 --models 4 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 1.0
PAGES = ("5_Confusion", "6_Circumplex", "7_Model_diversity")


def _timed_run(app) -> float:
    start = time.perf_counter()
    app.run()
    elapsed = time.perf_counter() - start
    if app.exception:
        raise SystemExit(f"page failed: {[e.value for e in app.exception]}")
    return elapsed


def _app(page: str, study_id: int):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=600)
    app.session_state["study_id"] = study_id
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=500)
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="faceagree-bench-"))
    os.environ["FACEAGREE_DATA_DIR"] = str(folder)
    os.environ["FACEAGREE_DB_URL"] = f"sqlite:///{folder / 'bench.sqlite'}"
    from db.engine import make_engine, make_sessionmaker
    from tests.analysis_seed import seed_study

    start = time.perf_counter()
    factory = make_sessionmaker(make_engine())
    seeded, twin = (
        seed_study(factory, name, n_stimuli=args.stimuli, n_raters=args.raters, n_models=args.models, seed=seed)
        for seed, name in enumerate(("bench", "bench twin"))
    )
    print(f"seeded 2 studies of {args.stimuli} stimuli x {args.raters} raters ({seeded.n_ratings} ratings) "
          f"x {args.models} models in {time.perf_counter() - start:.1f} s")

    app = _app("4_Agreement", seeded.study_id)
    print(f"Agreement, first render (imports + report, 1000 resamples): {_timed_run(app):.2f} s")
    print(f"Agreement, first render of a second study (report only): "
          f"{_timed_run(_app('4_Agreement', twin.study_id)):.2f} s")
    same = [_timed_run(app) for _ in range(args.repeats)]
    print(f"Agreement, re-render same session: {', '.join(f'{t:.3f}' for t in same)} s")
    fresh = [_timed_run(_app("4_Agreement", seeded.study_id)) for _ in range(args.repeats)]
    print(f"Agreement, fresh session from cache: {', '.join(f'{t:.3f}' for t in fresh)} s")
    for page in PAGES:
        other = _app(page, seeded.study_id)
        first = _timed_run(other)
        again = _timed_run(other)
        print(f"{page}: first {first:.3f} s (cached report), re-render {again:.3f} s")
    worst = max(same + fresh)
    verdict = "OK" if worst < TARGET_S else "OVER TARGET"
    print(f"worst Agreement re-render from cache: {worst:.3f} s (target < {TARGET_S:.0f} s): {verdict}")


if __name__ == "__main__":
    main()
