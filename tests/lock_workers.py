"""Worker processes for tests/test_write_locks.py: each imports through the production code.

    python tests/lock_workers.py ratings DB_URL STUDY_ID CSV READY_FILE GO_FILE [CHUNK_ROWS]
    python tests/lock_workers.py stimuli DB_URL STUDY_ID ZIP

``ratings`` prepares its import, touches READY_FILE, waits for GO_FILE (so several workers
reach the duplicate check together), imports in chunks (of CHUNK_ROWS ratings, default the
production size) and prints ``stored <id>`` or ``duplicate <message>``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.access import Role
from core.ratings.layouts import detect_mapping, prepare_ratings  # noqa: E402
from core.ratings.scales import PRESETS  # noqa: E402
from core.workflows.stimuli import import_files  # noqa: E402
from core.io.tabular import read_table  # noqa: E402
from db import ratings as rating_db  # noqa: E402
from db.engine import make_engine, make_sessionmaker  # noqa: E402
from db.ratings import DuplicateFileError, import_batch_in_chunks, stimulus_index  # noqa: E402


def import_ratings(
    url: str, study_id: int, csv: Path, ready: Path, go: Path, chunk_rows: str = ""
) -> None:
    if chunk_rows:
        rating_db.INSERT_CHUNK = int(chunk_rows)
    factory = make_sessionmaker(make_engine(url))
    data = csv.read_bytes()
    frame = read_table(csv.name, data)
    with factory() as session:
        index = stimulus_index(session, study_id)
    scales = {"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]}
    prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index, scales=scales)
    ready.touch()
    while not go.exists():
        time.sleep(0.002)
    try:
        result = import_batch_in_chunks(factory, study_id, prepared, file_name=csv.name, data=data, actor=Role.OPERATOR)
    except DuplicateFileError as error:
        print(f"duplicate {error}")
    else:
        print(f"stored {result.batch_id}")


def import_zip(url: str, study_id: int, archive: Path) -> None:
    factory = make_sessionmaker(make_engine(url))
    with factory.begin() as session:
        report = import_files(session, study_id, [(archive.name, archive)], actor=Role.OPERATOR)
    print(f"added {len(report.added)}")


if __name__ == "__main__":
    command, url, study = sys.argv[1:4]
    paths = [Path(arg) for arg in sys.argv[4:]]
    if command == "ratings":
        import_ratings(url, int(study), *paths[:3], *sys.argv[7:])
    else:
        import_zip(url, int(study), *paths)
