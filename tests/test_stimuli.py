"""Stimulus import (files, ZIPs, bad input), stimulus ids, metadata tables, table reader, CLI."""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import select

from core.access import Role
from core.cli import stimuli as cli
from core.io.storage import read_blob
from core.io.tabular import TableError, parse_number, read_table
from core.workflows.stimuli import (
    MetadataError,
    ZipLimits,
    import_files,
    import_metadata,
    lookup_key,
    parse_code_map,
    stimulus_key,
)
from db import stimuli as stimulus_db
from db.models import Stimulus, StimulusAttribute, Study

pytestmark = pytest.mark.backends


def png(seed: int, size: tuple[int, int] = (24, 16)) -> bytes:
    """A small PNG whose content differs for every seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


@pytest.fixture
def study(sessions) -> int:
    with sessions.begin() as session:
        return stimulus_db.create_study(session, "pilot", actor=Role.OPERATOR).id


def run_import(sessions, study_id: int, files, **options):
    with sessions.begin() as session:
        return import_files(session, study_id, files, **options, actor=Role.OPERATOR)


def paths_of(sessions, study_id: int) -> dict[str, str]:
    with sessions() as session:
        rows = session.execute(
            select(Stimulus.path, Stimulus.sha256).where(Stimulus.study_id == study_id)
        )
        return dict(rows.all())


def statuses(report) -> dict[str, str]:
    return {entry.file: entry.status for entry in report.entries}


# ---------------------------------------------------------------- import of images and ZIPs


def test_images_are_stored_with_thumbnail_and_size(sessions, study) -> None:
    report = run_import(sessions, study, [("face01.png", png(1, (300, 200)))], precropped=True)
    assert [e.path for e in report.added] == ["face01.png"] and report.ok
    with sessions() as session:
        stimulus = session.scalar(select(Stimulus))
        assert (stimulus.width, stimulus.height, stimulus.media_type) == (300, 200, "image/png")
        assert stimulus.precropped
        assert Image.open(io.BytesIO(stimulus.thumbnail)).size == (256, 171)
        assert read_blob(stimulus.sha256) == png(1, (300, 200))


def test_zip_keeps_folders_and_skips_system_entries(sessions, study) -> None:
    archive = zip_of({
        "set1/": b"",
        "set1/a.png": png(1),
        "set2/sub/b.png": png(2),
        "__MACOSX/set1/._a.png": b"\x00\x05\x16\x07",
        ".DS_Store": b"junk",
    })
    report = run_import(sessions, study, [("faces.zip", archive)])
    assert sorted(paths_of(sessions, study)) == ["set1/a.png", "set2/sub/b.png"]
    assert len(report.ignored) == 1 and "2 hidden or system entries" in report.ignored[0].message
    assert report.ok


def test_reimport_is_deduplicated(sessions, study) -> None:
    run_import(sessions, study, [("a.png", png(1))])
    again = run_import(sessions, study, [("a.png", png(1)), ("copy_of_a.png", png(1))])
    assert [e.status for e in again.entries] == ["duplicate", "duplicate"]
    assert "same image content as the existing stimulus 'a.png'" in again.entries[1].message
    assert list(paths_of(sessions, study)) == ["a.png"]


def test_same_path_different_content_is_a_conflict_and_keeps_the_original(sessions, study) -> None:
    run_import(sessions, study, [("a.png", png(1))])
    original = paths_of(sessions, study)["a.png"]
    report = run_import(sessions, study, [("a.png", png(2)), ("b.png", png(3))])
    assert statuses(report) == {"a.png": "conflict", "b.png": "added"}
    assert "nothing was replaced" in report.conflicts[0].message
    assert paths_of(sessions, study)["a.png"] == original
    assert not report.ok


def test_same_id_different_content_in_two_folders(sessions, study) -> None:
    """Under the file-name key, set1/a.png and set2/A.PNG (case-insensitive) are one id."""
    archive = zip_of({"set1/a.png": png(1), "set2/A.PNG": png(2)})
    report = run_import(sessions, study, [("faces.zip", archive)])
    assert statuses(report) == {"faces.zip: set1/a.png": "added", "faces.zip: set2/A.PNG": "conflict"}
    assert "'relative path'" in report.conflicts[0].message


def test_relative_path_key_allows_same_names_in_two_folders(sessions) -> None:
    with sessions.begin() as session:
        study_id = stimulus_db.create_study(session, "paths", stimulus_key_mode="path", actor=Role.OPERATOR).id
    archive = zip_of({"set1/a.png": png(1), "set2/a.png": png(2)})
    assert len(run_import(sessions, study_id, [("faces.zip", archive)]).added) == 2
    with sessions() as session:
        assert set(stimulus_db.key_index(session, study_id)) == {"set1/a.png", "set2/a.png"}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../escape.png", "path traversal"),
        ("set/../../escape.png", "path traversal"),
        ("/etc/escape.png", "absolute path"),
        ("C:/Users/escape.png", "drive letter"),
        ("..\\windows\\escape.png", "path traversal"),
    ],
)
def test_unsafe_zip_paths_are_rejected_others_kept(sessions, study, entry, reason) -> None:
    report = run_import(sessions, study, [("faces.zip", zip_of({entry: png(9), "ok.png": png(1)}))])
    assert [e.message for e in report.errors if reason in e.message]
    assert list(paths_of(sessions, study)) == ["ok.png"]


def test_zip_bomb_entry_is_rejected_without_inflating(sessions, study) -> None:
    """64 MB of zeros deflates ~1000:1 -- far beyond any real image."""
    archive = zip_of(
        {"bomb.bmp": bytes(64 << 20), "ok.png": png(1)}, compression=zipfile.ZIP_DEFLATED
    )
    assert len(archive) < 1 << 20
    report = run_import(sessions, study, [("faces.zip", archive)])
    assert statuses(report)["faces.zip: bomb.bmp"] == "error"
    assert "ZIP bomb" in report.errors[0].message
    assert list(paths_of(sessions, study)) == ["ok.png"]


def test_zip_total_size_limit_rejects_whole_archive(sessions, study) -> None:
    limits = ZipLimits(max_total_bytes=1000)
    archive = zip_of({"a.png": png(1, (40, 40)), "b.png": png(2, (40, 40))})
    report = run_import(sessions, study, [("faces.zip", archive), ("c.png", png(3))], limits=limits)
    assert statuses(report) == {"faces.zip": "error", "c.png": "added"}
    assert "ZIP bomb protection" in report.errors[0].message


def test_many_inflating_entries_reject_the_archive(sessions, study) -> None:
    """Each entry is below the ratio floor, together they inflate far beyond it."""
    limits = ZipLimits(ratio_floor_bytes=4000, max_ratio=5)
    archive = zip_of({f"{i}.bmp": bytes(3000) for i in range(3)}, compression=zipfile.ZIP_DEFLATED)
    report = run_import(sessions, study, [("f.zip", archive)], limits=limits)
    assert statuses(report) == {"f.zip": "error"} and "-fold" in report.errors[0].message


def test_streamed_size_limit_stops_an_oversized_file(sessions, study) -> None:
    """The byte limit is enforced while reading, not only from declared sizes."""
    report = run_import(sessions, study, [("big.png", png(1, (200, 200)))],
                        limits=ZipLimits(max_entry_bytes=10_000))
    assert "per-file limit" in report.errors[0].message


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("corrupt.jpg", b"\xff\xd8\xff\xe0" + bytes(200), "not an image"),
        ("truncated.png", png(1, (64, 64))[:300], "corrupt or truncated"),
        ("notes.png", "stimulus;valence\nface.jpg;4,5\n".encode(), "not an image"),
        ("empty.png", b"", "empty"),
        ("broken.zip", b"PK\x03\x04 this is not really a zip", "not a readable ZIP"),
    ],
)
def test_bad_files_get_a_message_and_do_not_stop_others(sessions, study, name, data, reason) -> None:
    report = run_import(sessions, study, [(name, data), ("good.png", png(1))])
    assert statuses(report) == {name: "error", "good.png": "added"}
    assert reason in report.errors[0].message


def test_bad_image_inside_zip_is_reported_by_entry(sessions, study) -> None:
    report = run_import(sessions, study, [("f.zip", zip_of({"x/bad.jpg": b"nope", "x/ok.png": png(1)}))])
    assert statuses(report) == {"f.zip: x/bad.jpg": "error", "f.zip: x/ok.png": "added"}


def test_decompression_bomb_in_zip(sessions, study) -> None:
    from tests.test_images import png_header_only

    report = run_import(sessions, study, [("f.zip", zip_of({"bomb.png": png_header_only(9000, 9000)}))])
    assert "decompression bombs" in report.errors[0].message
    assert not paths_of(sessions, study)


def test_rejected_files_leave_no_blobs(sessions, study, data_dir) -> None:
    run_import(sessions, study, [("bad.png", b"not an image at all")])
    assert not [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


def test_korean_names_from_legacy_and_utf8_zips(sessions, study) -> None:
    # A Korean Windows ZIP tool writes cp949 names without the UTF-8 flag: write an ASCII
    # placeholder of the same length, then put the cp949 bytes in its place.
    raw_name = "행복/사진1.png".encode("cp949")
    placeholder = b"q" * len(raw_name)
    legacy = zip_of({placeholder.decode(): png(1)}).replace(placeholder, raw_name)
    utf8 = zip_of({"슬픔/사진2.png": png(2)})
    run_import(sessions, study, [("legacy.zip", legacy), ("utf8.zip", utf8)])
    assert sorted(paths_of(sessions, study)) == ["슬픔/사진2.png", "행복/사진1.png"]


def test_streams_are_accepted_and_left_open(sessions, study) -> None:
    stream = io.BytesIO(png(1))
    stream.read(5)
    report = run_import(sessions, study, [("s.png", stream)])
    assert report.ok and not stream.closed


def test_progress_reports_every_file(sessions, study) -> None:
    calls = []
    run_import(
        sessions, study, [("f.zip", zip_of({"a.png": png(1), "b.png": png(2)})), ("c.png", png(3))],
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_report_csv_has_one_row_per_file(sessions, study) -> None:
    report = run_import(sessions, study, [("a.png", png(1)), ("b.png", b"")])
    text = report.to_csv().decode("utf-8-sig").splitlines()
    assert text[0] == "file,stimulus_path,status,message" and len(text) == 3


# ---------------------------------------------------------------- stimulus ids


@pytest.mark.parametrize(
    ("mode", "folded", "expected"),
    [
        ("name", False, "Face01.JPG"),
        ("name", True, "face01.jpg"),
        ("stem", False, "Face01"),
        ("path", False, "set 1/Face01.JPG"),
        ("path", True, "set 1/face01.jpg"),
    ],
)
def test_stimulus_key_modes(mode, folded, expected) -> None:
    assert stimulus_key("./set 1\\Face01.JPG", mode, folded) == expected


def test_lookup_key_matches_ids_as_rating_files_write_them() -> None:
    assert lookup_key("Face01.JPG", "stem", True) == stimulus_key("x/face01.jpg", "stem", True)
    assert lookup_key("anger.v2", "stem", False) == stimulus_key("anger.v2.png", "stem", False)
    assert lookup_key(" set1/a.png ", "path", False) == "set1/a.png"


def test_key_index_reports_ambiguity(sessions) -> None:
    with sessions.begin() as session:
        study_id = stimulus_db.create_study(session, "s", stimulus_key_mode="path", actor=Role.OPERATOR).id
    run_import(sessions, study_id, [("z.zip", zip_of({"a/x.png": png(1), "b/x.png": png(2)}))])
    with sessions.begin() as session:
        with pytest.raises(stimulus_db.AmbiguousKeyError, match="'x.png': a/x.png, b/x.png"):
            stimulus_db.set_key_mode(session, study_id, "name", True, actor=Role.OPERATOR)
        session.get(Study, study_id).stimulus_key = "name"  # e.g. set before these imports
        with pytest.raises(stimulus_db.AmbiguousKeyError, match="relative path"):
            stimulus_db.key_index(session, study_id)


def test_create_study_refuses_duplicates(sessions, study) -> None:
    with sessions.begin() as session, pytest.raises(ValueError, match="already exists"):
        stimulus_db.create_study(session, "pilot", actor=Role.OPERATOR)


# ---------------------------------------------------------------- gallery queries


def test_search_by_path_attribute_and_intended(sessions, study) -> None:
    run_import(sessions, study, [(f"img_{i}.png", png(i)) for i in range(5)])
    meta = "file,intended,set\nimg_0.png,happy,KDEF\nimg_1.png,anger,RaFD\n".encode()
    with sessions.begin() as session:
        import_metadata(session, study, "m.csv", meta, actor=Role.OPERATOR)
    with sessions() as session:
        assert stimulus_db.search_stimuli(session, study, "rafd")[1] == 1
        assert stimulus_db.search_stimuli(session, study, "img_")[1] == 5
        assert stimulus_db.search_stimuli(session, study, "%")[1] == 0
        page, total = stimulus_db.search_stimuli(session, study, "", ["happiness"])
        assert [s.path for s in page] == ["img_0.png"] and total == 1
        none = stimulus_db.search_stimuli(session, study, "", [stimulus_db.NO_INTENDED])[1]
        assert none == 3
        page, total = stimulus_db.search_stimuli(session, study, offset=4, limit=2)
        assert len(page) == 1 and total == 5


# ---------------------------------------------------------------- metadata


@pytest.fixture
def described_study(sessions, study) -> int:
    run_import(sessions, study, [(name, png(i)) for i, name in enumerate(["a.png", "b.png", "사진.png"])])
    return study


def attributes(sessions, study_id: int) -> dict[tuple[str, str], str]:
    with sessions() as session:
        rows = session.execute(
            select(Stimulus.path, StimulusAttribute.key, StimulusAttribute.value).join(Stimulus)
        )
        return {(path, key): value for path, key, value in rows}


def intended(sessions) -> dict[str, str | None]:
    with sessions() as session:
        return dict(session.execute(select(Stimulus.path, Stimulus.intended_emotion)).all())


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "cp949"]
)
def test_metadata_csv_semicolon_korean(sessions, described_study, encoding) -> None:
    text = "이미지;의도된 감정;성별;나이\n사진.png;행복;여;4,5\nA.PNG;분노;남;30\n"
    with sessions.begin() as session:
        report = import_metadata(session, described_study, "meta.csv", text.encode(encoding), actor=Role.OPERATOR)
    assert report.ok and report.matched == 2 and report.id_column == "이미지"
    assert report.intended_column == "의도된 감정"
    assert intended(sessions) == {"a.png": "anger", "b.png": None, "사진.png": "happiness"}
    assert attributes(sessions, described_study)[("사진.png", "나이")] == "4,5"


def test_metadata_xlsx_with_code_map(sessions, described_study) -> None:
    book = openpyxl.Workbook()
    book.active.append(["stimulus", "target", "poser_age"])
    book.active.append(["a.png", 1, 23])
    book.active.append(["b.png", 2, None])
    buffer = io.BytesIO()
    book.save(buffer)
    with sessions.begin() as session:
        report = import_metadata(
            session, described_study, "meta.xlsx", buffer.getvalue(),
            code_map=parse_code_map("1=anger; 2=disgust"),
            actor=Role.OPERATOR,
        )
    assert report.ok and report.intended_set == 2
    assert intended(sessions)["b.png"] == "disgust"
    assert ("b.png", "poser_age") not in attributes(sessions, described_study)


def test_metadata_reports_unknown_ids_labels_and_duplicates(sessions, described_study) -> None:
    text = "name,emotion,set\na.png,happy,X\nzzz.png,sad,X\nb.png,elated,Y\na.png,sad,Z\n,sad,W\n"
    with sessions.begin() as session:
        report = import_metadata(session, described_study, "m.csv", text.encode(), actor=Role.OPERATOR)
    rows = {issue.row: issue.reason for issue in report.issues}
    assert set(rows) == {3, 4, 5, 6}
    assert "unknown stimulus" in rows[3] and "unknown emotion label 'elated'" in rows[4]
    assert "already described on row 2" in rows[5] and "empty stimulus id" in rows[6]
    assert intended(sessions)["a.png"] == "happiness"
    assert attributes(sessions, described_study)[("b.png", "set")] == "Y"


def test_metadata_empty_cells_keep_stored_values(sessions, described_study) -> None:
    with sessions.begin() as session:
        import_metadata(session, described_study, "1.csv", b"file,gender\na.png,f\n", actor=Role.OPERATOR)
        report = import_metadata(session, described_study, "2.csv", b"file,gender,age\na.png,,31\n", actor=Role.OPERATOR)
    assert report.values_changed == 1
    assert attributes(sessions, described_study)[("a.png", "gender")] == "f"


def test_metadata_reserved_names_do_not_shadow_fields(sessions, described_study) -> None:
    with sessions.begin() as session:
        report = import_metadata(
            session, described_study, "m.csv", b"file,sha256,intended\na.png,abc,fear\n",
            actor=Role.OPERATOR,
        )
    assert report.attribute_columns == {"sha256": "sha256 (metadata)"}


def test_metadata_file_level_errors(sessions, described_study) -> None:
    with sessions.begin() as session:
        with pytest.raises(MetadataError, match="no column named 'nope'"):
            import_metadata(session, described_study, "m.csv", b"file,x\na.png,1\n", id_column="nope", actor=Role.OPERATOR)
        with pytest.raises(MetadataError, match="no column contains ids"):
            import_metadata(session, described_study, "m.csv", b"file,x\nqq.png,1\n", actor=Role.OPERATOR)
        with pytest.raises(TableError, match="empty"):
            import_metadata(session, described_study, "m.csv", b"", actor=Role.OPERATOR)


# ---------------------------------------------------------------- table reader


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4,5", 4.5), ("4.5", 4.5), ("-3", -3.0), ("\u22123,25", -3.25), ("1.234,5", 1234.5),
        ("1,234.5", 1234.5), (" 7 ", 7.0), ("", None), ("abc", None), ("nan", None),
        ("inf", None), ("1,2,3", None),
    ],
)
def test_parse_number(text, expected) -> None:
    assert parse_number(text) == expected


@settings(max_examples=50)
@given(st.floats(-1e6, 1e6, allow_nan=False).map(lambda value: round(value, 3)))
def test_parse_number_decimal_comma_roundtrip(value: float) -> None:
    assert parse_number(f"{value:.3f}".replace(".", ",")) == pytest.approx(value)
    assert parse_number(f"{value:.3f}") == pytest.approx(value)


def test_read_table_delimiters_and_encodings() -> None:
    tab = read_table("r.txt", b"a\tb\nx\t1,5\n")
    assert list(tab.columns) == ["a", "b"] and tab.loc[0, "b"] == "1,5"
    western = read_table("r.csv", "name;score\nJosé;4,5\n".encode("cp1252"))
    assert western.loc[0, "name"] == "José" and western.loc[0, "score"] == "4,5"
    blank_rows = read_table("r.csv", b"a,b\n1,2\n\n3,4\n")
    assert list(blank_rows.index + 2) == [2, 4]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n  \n", "empty"),
        (b"\xd0\xcf\x11\xe0" + bytes(100), "old Excel .xls"),
        ("a,b\n".encode("utf-16-le"), "UTF-16 text without a byte-order mark"),
        (b"a,b\n", "no data rows"),
        (b"PK\x03\x04broken", "cannot read it as an Excel workbook"),
    ],
)
def test_read_table_bad_files(data, reason) -> None:
    with pytest.raises(TableError, match=reason):
        read_table("bad.csv", data)


# ---------------------------------------------------------------- command line


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_imports_folders_zips_and_metadata(db_url, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "faces"
    (folder / "set1").mkdir(parents=True)
    (folder / "set1" / "a.png").write_bytes(png(1))
    (folder / ".hidden.png").write_bytes(png(2))
    (tmp_path / "more.zip").write_bytes(zip_of({"b.png": png(3)}))
    argv = ["--db", db_url, "import-stimuli", "--study", "cli", "--create", "--key", "path"]
    assert cli_main(argv + [str(folder), str(tmp_path / "more.zip")]) == 0
    assert "2 added" in capsys.readouterr().out
    meta = tmp_path / "meta.csv"
    meta.write_text("stim,label\nset1/a.png,1\n", encoding="utf-8")
    code = cli_main(["--db", db_url, "import-metadata", "--study", "cli", "--code", "1=fear",
                     "--intended-column", "label", str(meta)])
    assert code == 0 and "1 intended emotions set" in capsys.readouterr().out


def test_cli_exit_codes_on_errors(db_url, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert cli_main(["--db", db_url, "import-stimuli", "--study", "x", str(bad)]) == 2
    assert cli_main(["--db", db_url, "import-stimuli", "--study", "x", "--create", str(bad)]) == 1
    assert "ERROR" in capsys.readouterr().out
    assert cli_main(["--db", db_url, "import-stimuli", "--study", "x", str(tmp_path / "no")]) == 2
