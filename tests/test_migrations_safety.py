"""Migrations never lose ratings: table rebuilds, a guard against lost rows, a lock for
concurrent starts, and leftovers of a crashed migration. Real SQLite files, real processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from core.access import Role
from core.workflows.demo import load_demo
from db.engine import make_engine, make_sessionmaker
from db.migrate import MigrationAborted, alembic_config, downgrade, upgrade

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = "_alembic_tmp_prediction"


def tables(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, read with a plain sqlite3 connection."""
    with sqlite3.connect(path) as connection:
        names = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {name: sorted(connection.execute(f'SELECT * FROM "{name}"'), key=repr)
                for name in names}


def foreign_key_problems(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA foreign_key_check").fetchall()


def revision(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def repo_head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def write_migration(folder: Path, upgrade_body: str) -> Path:
    """A throwaway revision on top of the project's head, outside db/migrations/versions."""
    folder.mkdir()
    body = textwrap.indent(textwrap.dedent(upgrade_body).strip(), "    ")
    source = (
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f'revision = "9999_test"\ndown_revision = "{repo_head()}"\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    (folder / "9999_test.py").write_text(source)
    return folder


@pytest.fixture
def demo_file(db_url: str) -> Path:
    """A database at head holding the demo study: ratings, attributes, batches, predictions."""
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as session:
        load_demo(session, actor=Role.OPERATOR)
    engine.dispose()
    return Path(db_url.split("///", 1)[1])


@pytest.fixture
def old_file(demo_file: Path, db_url: str) -> Path:
    """The demo database stepped back to revision 0001, as a user's file from before 0002."""
    engine = make_engine(db_url, migrate=False)
    downgrade(engine, "0001")
    engine.dispose()
    assert revision(demo_file) == "0001"
    return demo_file


REBUILD_PARENTS = """
    for table, column, width in (("study", "name", 300), ("stimulus", "media_type", 100),
                                 ("rating_batch", "file_name", 600)):
        with op.batch_alter_table(table, recreate="always") as batch_op:
            batch_op.alter_column(column, type_=sa.String(width))
"""


def test_rebuilding_parent_tables_keeps_every_row(
    demo_file: Path, db_url: str, tmp_path: Path
) -> None:
    """Batch mode drops and recreates study, stimulus and rating_batch; with foreign keys on,
    each DROP would cascade into ratings, attributes and predictions."""
    before = tables(demo_file)
    assert len(before["rating"]) > 0 and len(before["stimulus_attribute"]) > 0
    engine = make_engine(db_url, migrate=False)
    upgrade(engine, extra_version_dirs=[write_migration(tmp_path / "v", REBUILD_PARENTS)])
    after = tables(demo_file)
    assert revision(demo_file) == "9999_test"
    del before["alembic_version"], after["alembic_version"]
    assert after == before
    assert foreign_key_problems(demo_file) == []
    with engine.connect() as connection:  # the pooled connection has foreign keys on again
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


DELETE_RATINGS = """
    op.add_column("study", sa.Column("doomed", sa.Integer()))
    op.execute("DELETE FROM rating")
"""


def test_upgrade_that_deletes_ratings_is_rolled_back(
    demo_file: Path, db_url: str, tmp_path: Path
) -> None:
    before = tables(demo_file)
    engine = make_engine(db_url, migrate=False)
    # SQLite commits the ALTER at once, so only the backup can undo it.
    versions = write_migration(tmp_path / "v", DELETE_RATINGS)
    with pytest.raises(MigrationAborted, match=r"rating: \d+ -> 0") as raised:
        upgrade(engine, extra_version_dirs=[versions])
    engine.dispose()
    assert tables(demo_file) == before
    backups = list((demo_file.parent / "backups").glob(f"test-{repo_head()}-*.sqlite"))
    assert len(backups) == 1 and tables(backups[0]) == before
    assert str(backups[0]) in "".join(raised.value.__notes__)


def test_start_at_head_takes_no_backup_and_an_upgrade_takes_one(
    old_file: Path, db_url: str
) -> None:
    folder = old_file.parent / "backups"
    taken_by_the_downgrade = set(folder.iterdir())
    make_engine(db_url)
    make_engine(db_url)
    backups = set(folder.iterdir()) - taken_by_the_downgrade
    assert [path.name.startswith("test-0001-") for path in backups] == [True]
    assert tables(backups.pop())["alembic_version"] == [("0001",)]


def test_stray_scratch_table_does_not_block_the_next_start(old_file: Path, db_url: str) -> None:
    """A migration of prediction that crashed mid-rebuild leaves its scratch copy behind."""
    with sqlite3.connect(old_file) as connection:
        connection.execute(f"CREATE TABLE {SCRATCH} AS SELECT * FROM prediction")
    ratings = tables(old_file)["rating"]
    make_engine(db_url)
    assert revision(old_file) == repo_head()
    # Later revisions may append columns (0006 adds rating.occurrence).
    after = [row[:len(ratings[0])] for row in tables(old_file)["rating"]]
    assert SCRATCH not in tables(old_file) and after == ratings


def test_scratch_table_that_may_be_the_only_copy_is_kept(old_file: Path, db_url: str) -> None:
    with sqlite3.connect(old_file) as connection:
        connection.execute(f"ALTER TABLE prediction RENAME TO {SCRATCH}")
    with pytest.raises(MigrationAborted, match="only copy"):
        make_engine(db_url)
    assert SCRATCH in tables(old_file) and revision(old_file) == "0001"


def test_downgrade_refuses_to_merge_predictions_imported_into_two_studies(
    demo_file: Path, db_url: str
) -> None:
    """0001 holds one prediction per image and model; 0002 gave each study its own copy."""
    with sqlite3.connect(demo_file) as connection:
        connection.execute("INSERT INTO study (name, description, is_demo, stimulus_key,"
                           " key_case_insensitive, created_at) VALUES ('pilot', '', 0, 'name', 1,"
                           " '2026-01-01')")
        connection.execute("INSERT INTO prediction (stimulus_sha256, model_id, checkpoint_sha256,"
                           " preprocessing, detector, status, created_at, study_id, probs)"
                           " SELECT stimulus_sha256, model_id, checkpoint_sha256, preprocessing,"
                           " detector, status, created_at, 2, probs FROM prediction")
    before = tables(demo_file)
    engine = make_engine(db_url, migrate=False)
    with pytest.raises(RuntimeError, match="imported into more than one study"):
        downgrade(engine, "0001")
    engine.dispose()
    assert tables(demo_file) == before


START_AT_ONCE = """
import sys, time
from pathlib import Path
import db.migrate
from db.engine import make_engine

url, barrier, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
(barrier / me).touch()
deadline = time.monotonic() + 60
while len(list(barrier.iterdir())) < 4 and time.monotonic() < deadline:
    time.sleep(0.005)
make_engine(url)
"""


def start_four_processes(db_url: str, barrier: Path) -> None:
    """Four app starts on one file, released together once all have imported the code."""
    barrier.mkdir()
    starts = [
        subprocess.Popen([sys.executable, "-c", START_AT_ONCE, db_url, str(barrier), str(me)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for me in range(4)
    ]
    errors = [start.communicate(timeout=120)[1] for start in starts]
    assert [start.returncode for start in starts] == [0] * 4, "\n".join(errors)


@pytest.mark.slow
def test_four_starts_on_a_new_file(db_url: str, tmp_path: Path) -> None:
    start_four_processes(db_url, tmp_path / "barrier")
    path = Path(db_url.split("///", 1)[1])
    assert revision(path) == repo_head()
    assert not [name for name in tables(path) if name.startswith("_alembic_tmp_")]


@pytest.mark.slow
def test_four_starts_on_an_old_file(old_file: Path, db_url: str, tmp_path: Path) -> None:
    before = tables(old_file)
    start_four_processes(db_url, tmp_path / "barrier")
    after = tables(old_file)
    assert revision(old_file) == repo_head()
    assert not [name for name in after if name.startswith("_alembic_tmp_")]
    for name in ("study", "stimulus", "stimulus_attribute", "rating_batch", "rating"):
        # Later revisions may append columns (0003 adds rating_batch.dedupe_sha256).
        assert [row[:len(before[name][0])] for row in after[name]] == before[name]
    assert len(after["prediction"]) == len(before["prediction"])
    assert foreign_key_problems(old_file) == []
    assert len(list((old_file.parent / "backups").glob("test-0001-*"))) == 1  # one upgraded
