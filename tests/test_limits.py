"""Size limits: the cell cap on tabular uploads (reader, CLI, Ratings page), the server config,
and the CLI importing only the command it runs."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core.access import Role
from core.io import tabular
from core.__main__ import main as cli
from core.io.tabular import MAX_CELLS, TableError, read_table
from db.models import RatingBatch
from tests.markdown_text import shown
from db.queries import get_or_create_study

ROOT = Path(__file__).resolve().parents[1]
HEADER = "rater,stimulus,emotion,valence,arousal\n"
ROW = "P1,img01.png,happy,5,5\n"


def long_csv(rows: int) -> bytes:
    return (HEADER + ROW * rows).encode()


def xlsx(rows: int, columns: int = 5) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame([[f"c{j}" for j in range(columns)]] * rows).to_excel(buffer, index=False)
    return buffer.getvalue()


def test_a_csv_at_the_cell_limit_is_read() -> None:
    assert len(read_table("r.csv", long_csv(9), max_cells=50)) == 9  # header + 9 rows = 50 cells


def test_a_csv_above_the_cell_limit_is_refused_with_its_size_and_what_to_do() -> None:
    with pytest.raises(TableError) as refused:
        read_table("long.csv", long_csv(10), max_cells=50)
    message = str(refused.value)
    assert message.startswith("long.csv: more than 50 cells (about 11 lines of 5 columns)")
    assert "Split it into smaller files" in message


def test_an_xlsx_above_the_cell_limit_is_refused() -> None:
    assert len(read_table("r.xlsx", xlsx(9), max_cells=50)) == 9
    with pytest.raises(TableError, match=r"r\.xlsx: more than 50 cells \(more than 10 rows of 5"):
        read_table("r.xlsx", xlsx(10), max_cells=50)


def test_the_cli_refuses_a_file_above_the_default_limit(study_with_stimulus, db_url, tmp_path,
                                                         capsys) -> None:
    rows = MAX_CELLS // 5  # with the header row, one row above the limit
    source = tmp_path / "million.csv"
    source.write_bytes(long_csv(rows))
    assert cli(["--db", db_url, "import-ratings", "--study", "pilot", str(source),
                "--valence-scale", "sam9", "--arousal-scale", "sam9"]) == 2
    error = capsys.readouterr().err
    assert f"million.csv: more than {MAX_CELLS:,} cells (about {rows + 1:,} lines" in error


@pytest.fixture
def study_with_stimulus(sessions) -> int:
    from db.models import Stimulus

    with sessions.begin() as session:
        study_id = get_or_create_study(session, "pilot", actor=Role.OPERATOR).id
        session.add(Stimulus(
            study_id=study_id, path="img01.png", sha256="1" * 64, media_type="image/png",
            width=1, height=1, thumbnail=b"",
        ))
    return study_id


def test_the_ratings_page_refuses_a_file_above_the_limit(study_with_stimulus, sessions,
                                                          monkeypatch) -> None:
    monkeypatch.setattr(tabular, "MAX_CELLS", 50)
    at = AppTest.from_file(str(ROOT / "pages" / "2_Ratings.py"), default_timeout=60).run()
    at.file_uploader[0].set_value(("long.csv", long_csv(10), "text/csv"))
    at.run()
    assert not at.exception
    assert any(shown(e.value).startswith("long.csv: more than 50 cells") for e in at.error)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RatingBatch)) == 0


def test_server_config_binds_locally_and_bounds_uploads() -> None:
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "127.0.0.1"
    # 2,000 face JPEGs of 100-200 KB fit; the former 2,000 MB did not bound anything useful.
    assert 400 <= server["maxUploadSize"] <= 500
    assert server["maxMessageSize"] <= 200
    assert (server["fileWatcherType"], server["runOnSave"]) == ("none", False)


def test_the_cli_imports_only_the_module_of_the_command() -> None:
    probe = (
        "import sys; from core.__main__ import build_parser; "
        "parser = build_parser(['--db', 'sqlite://', 'import-ratings', '--study', 's', 'f.csv']); "
        "print('torch' in sys.modules, 'core.cli.models' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_the_cli_help_lists_every_command() -> None:
    from core.__main__ import build_parser

    help_text = build_parser(["--help"]).format_help()
    for command in ("import-ratings", "report", "run", "import-predictions"):
        assert command in help_text
