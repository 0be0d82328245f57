"""Hand-written nasty uploads on every import path, and transaction safety of the imports.

Each case is a file users really send (Excel's odd exports, camera images, broken archives); the
expectation is a clear message naming the file or row, or a documented decision, and nothing
already stored lost when an import fails half-way.
"""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import openpyxl
import pytest
from PIL import Image
from sqlalchemy import func, select

from core.access import Role
from core.io.images import ImageError, open_image
from core.io.tabular import TableError, read_table
from core.models import card as card_module
from core.models.card import CardError, parse_card_text
from core.ratings.layouts import MappingError, StimulusIndex, detect_mapping, prepare_ratings
from core.ratings.scales import PRESETS
from core.workflows import catalog
from core.workflows import predictions_import as pi
from core.workflows import stimuli as stimuli_module
from core.workflows.stimuli import ZipLimits, import_files, import_metadata
from db import stimuli as stimulus_db
from db.models import Prediction, Rating, RatingBatch, RegisteredModel, Stimulus, StimulusAttribute
import db.ratings as rating_db
from tests.test_card_models import TinyNet, card_text, onnx_bytes

SAM = {"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]}
NAMES = ["img01.png", "img02.png", "img03.png"]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise_png(seed: int, size: tuple[int, int] = (12, 10)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


def xlsx(*sheets: tuple[str, list[list[object]]], merge: str | None = None) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    if merge:
        book.worksheets[0].merge_cells(merge)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def zip_of(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


@pytest.fixture
def index() -> StimulusIndex:
    return StimulusIndex.build({name: number for number, name in enumerate(NAMES, start=1)})


@pytest.fixture
def study(sessions) -> int:
    with sessions.begin() as session:
        study_id = stimulus_db.create_study(session, "pilot", actor=Role.OPERATOR).id
        for number, name in enumerate(NAMES, start=1):
            session.add(Stimulus(
                study_id=study_id, path=f"set/{name}", sha256=f"{number:064x}",
                media_type="image/png", width=1, height=1, thumbnail=b"",
            ))
    return study_id


def count(sessions, model, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


# ------------------------------------------------------------------------------------- tables


@pytest.mark.parametrize(("data", "message"), [
    (b"rater,stimulus,valence\n", "no data rows below the header"),
    (b"rater,stimulus,rater\nP1,img01.png,P2\n", r"names 'rater' twice \(columns 1 and 3\)"),
    (b"rater,stimulus\nP1,img01.png,5\n", "column 3 .* first on row 2, but no name in the header row"),
    (b'rater,stimulus\n"P1,img01.png\nP2,img02.png\n', "near line 3 .*quotes are closed"),
    (b"", "the file is empty"),
    (b"a" * 300_000 + b"\n1\n", "cannot split the file into columns near line 1"),
    (b",".join([b"c"] * 20_000) + b"\n1\n", "more than 16,384 columns"),
    ("rater,stimulus\n".encode("utf-16-le"), "UTF-16 text without a byte-order mark"),
])
def test_unreadable_tables_name_the_file_and_the_fix(data: bytes, message: str) -> None:
    with pytest.raises(TableError, match=f"^ratings.csv: .*{message}"):
        read_table("ratings.csv", data)


def test_padded_headers_and_stray_byte_order_marks_are_cleaned() -> None:
    """Two exports pasted together leave a BOM inside the file; Excel pads headers with spaces."""
    data = "\ufeffrater , stimulus\u200b,valence\nP1,img01.png,5\n\ufeffP2,img02.png,4\n".encode()
    frame = read_table("r.csv", data)
    assert list(frame.columns) == ["rater", "stimulus", "valence"]
    assert frame["rater"].tolist() == ["P1", "P2"]


def test_utf16_unicode_text_export_is_read() -> None:
    """Excel's "Unicode Text" export: UTF-16 with a byte-order mark, tab-separated."""
    data = "평가자\t자극\t정서가\nP1\timg01.png\t4,5\n".encode("utf-16")
    frame = read_table("ratings.txt", data)
    assert list(frame.columns) == ["평가자", "자극", "정서가"]
    assert frame.loc[0, "정서가"] == "4,5"


def test_old_mac_line_endings_and_padding_of_short_rows() -> None:
    frame = read_table("r.csv", b"a,b,c\r1,2,3\r4\r\r5,6,7\r")
    assert frame.to_numpy().tolist() == [["1", "2", "3"], ["4", "", ""], ["5", "6", "7"]]
    assert (frame.index + 2).tolist() == [2, 3, 5]


def test_xlsx_reads_the_first_sheet_and_names_the_others() -> None:
    data = xlsx(("Ratings", [["rater", "stimulus"], ["P1", "img01.png"]]),
                ("Codebook", [["code", "label"], [1, "anger"]]))
    frame = read_table("r.xlsx", data)
    assert list(frame.columns) == ["rater", "stimulus"]
    assert frame.attrs["notes"] == [
        "r.xlsx: read the first sheet 'Ratings'; other sheets ('Codebook') were ignored. "
        "Move a table to the first sheet (or save it as CSV) to import it."
    ]
    assert read_table("one.xlsx", xlsx(("Only", [["a"], [1]]))).attrs["notes"] == []


def test_the_ignored_sheets_reach_the_prediction_hints_and_metadata_notes(sessions, study) -> None:
    data = xlsx(("Scores", [["file", "happy", "sad"], ["img01.png", 0.9, 0.1]]),
                ("About", [["tool", "FaceReader"]]))
    with sessions() as session:
        hints = pi.preview(session, study, "p.xlsx", data).hints
    with sessions.begin() as session:
        notes = import_metadata(session, study, "p.xlsx", data, actor=Role.OPERATOR).notes
    assert hints == notes == [
        "p.xlsx: read the first sheet 'Scores'; other sheets ('About') were ignored. "
        "Move a table to the first sheet (or save it as CSV) to import it."
    ]


def test_xlsx_with_an_empty_first_sheet_says_where_the_data_is() -> None:
    data = xlsx(("Sheet1", []), ("Data", [["rater", "stimulus"], ["P1", "img01.png"]]))
    with pytest.raises(TableError, match=r"first sheet 'Sheet1' is empty .*other sheets: 'Data'"):
        read_table("r.xlsx", data)


def test_xlsx_merged_title_row_above_the_header_is_refused() -> None:
    data = xlsx(("S", [["Study 2024 ratings"], ["rater", "stimulus", "valence"],
                       ["P1", "img01.png", 5]]), merge="A1:C1")
    with pytest.raises(TableError, match=r"column 2 \(Excel column B\) has values, first on row 2, "
                                         r"but no name in the header row \(row 1\).*remove title rows"):
        read_table("r.xlsx", data)


def test_xlsx_title_rows_left_blank_keep_spreadsheet_row_numbers() -> None:
    data = xlsx(("S", [[], ["rater", "stimulus"], ["P1", "img01.png"], [], ["P2", "img02.png"]]))
    frame = read_table("r.xlsx", data)
    assert (frame.index + 2).tolist() == [3, 5]  # the rows Excel shows


def with_cached_value(data: bytes, formula: str, value: str) -> bytes:
    """Add the computed value Excel stores beside a formula (openpyxl writes none)."""
    source, buffer = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = content.replace(f"<f>{formula}</f><v />".encode(),
                                          f"<f>{formula}</f><v>{value}</v>".encode())
            target.writestr(info, content)
    return buffer.getvalue()


def test_xlsx_formulas_read_as_the_values_excel_computed(index) -> None:
    rows = [["rater", "stimulus", "valence"], ["P1", "img01.png", "=2+3"], ["P2", "img01.png", "=1+1"]]
    data = with_cached_value(xlsx(("S", rows)), "2+3", "5")
    frame = read_table("r.xlsx", data)
    assert frame["valence"].tolist() == ["5", ""]
    prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index, scales=SAM)
    # Without a computed value (a workbook written by a script) the cell is empty: reported.
    assert prepared.errors[["row", "kind"]].values.tolist() == [[3, "missing"]]


def test_xlsx_zip_bomb_is_refused_from_the_declared_sizes(monkeypatch) -> None:
    import core.io.tabular as tabular

    data = xlsx(("S", [["rater", "stimulus"], ["P1", "img01.png"]]))
    monkeypatch.setattr(tabular, "MAX_WORKBOOK_BYTES", 1000)
    with pytest.raises(TableError, match=r"^r.xlsx: the workbook expands to .* ZIP bombs"):
        read_table("r.xlsx", data)


def test_xlsx_with_an_entity_expansion_bomb_is_refused() -> None:
    laughs = (b'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "' + b"ha" * 50 + b'">'
              + b"".join(b'<!ENTITY %c "%s">' % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(6))
              + b']><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
              b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&g;</t></is></c></row>'
              b"</sheetData></worksheet>")  # 600 bytes that expand to 100 MB
    source, buffer = zipfile.ZipFile(io.BytesIO(xlsx(("S", [["a"], [1]])))), io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            is_sheet = info.filename == "xl/worksheets/sheet1.xml"
            target.writestr(info, laughs if is_sheet else source.read(info))
    with pytest.raises(TableError, match="^bomb.xlsx: cannot read it as an Excel workbook.*amplification"):
        read_table("bomb.xlsx", buffer.getvalue())


# ------------------------------------------------------------------------------------ ratings


def prepare(text: str, index: StimulusIndex, **options):
    frame = read_table("r.csv", text.encode())
    mapping = detect_mapping(frame, index, options.get("codes"))
    return prepare_ratings(frame, mapping, index=index, scales=SAM, **options)


def test_non_numbers_in_ratings_are_reported_by_row(index) -> None:
    rows = ["NaN", "inf", "", "-", "N/A", "5/9", "-inf", "1e400", '"4,5"']
    text = "rater,stimulus,valence\n" + "".join(f"P{i},img01.png,{v}\n" for i, v in enumerate(rows))
    prepared = prepare(text, index)
    found = dict(zip(prepared.errors["row"], prepared.errors["kind"]))
    assert found == {2: "non_numeric", 3: "non_numeric", 4: "missing", 5: "non_numeric",
                     6: "non_numeric", 7: "non_numeric", 8: "non_numeric", 9: "non_numeric"}
    assert prepared.ratings["valence_raw"].tolist() == [4.5]


def test_label_case_width_and_emoji(index) -> None:
    text = ("rater,stimulus,emotion\nP1,img01.png,HaPpY\nP2,img01.png,ＡＮＧＥＲ\n"
            "P3,img01.png,😀\nP4,img01.png,happy 😀\n")
    prepared = prepare(text, index)
    assert prepared.ratings["emotion"].tolist() == ["happiness", "anger"]
    assert prepared.errors[["row", "kind"]].values.tolist() == [[4, "unknown_label"], [5, "unknown_label"]]


def test_stimuli_of_another_study_are_unknown(sessions, study) -> None:
    with sessions.begin() as session:
        other = stimulus_db.create_study(session, "other", actor=Role.OPERATOR).id
        session.add(Stimulus(study_id=other, path="elsewhere.png", sha256="f" * 64,
                             media_type="image/png", width=1, height=1, thumbnail=b""))
    with sessions() as session:
        index = rating_db.stimulus_index(session, study)
    prepared = prepare("rater,stimulus,emotion\nP1,elsewhere.png,happy\nP1,img01.png,sad\n", index)
    assert prepared.errors[["row", "kind"]].values.tolist() == [[2, "unknown_stimulus"]]
    assert "not in the study" in prepared.errors.loc[0, "message"]


@pytest.mark.parametrize(("text", "layout"), [
    ("image,row,raw,column\nimg01.png,3,4,5\n", "wide_stimulus"),
    ("participant,row,raw\nP1,3,4\n", "wide_rater"),
])
def test_columns_named_like_internal_fields_keep_their_values(text, layout) -> None:
    """``row``, ``raw`` and ``column`` are also names the conversion uses internally."""
    frame = read_table("r.csv", text.encode())
    index = StimulusIndex.build({"img01.png": 1, "row": 2, "raw": 3})
    mapping = detect_mapping(frame, index, layout=layout)
    mapping.dimension = "valence"
    prepared = prepare_ratings(frame, mapping, index=index, scales=SAM)
    got = sorted(zip(prepared.ratings["rater"], prepared.ratings["stimulus_key"],
                     prepared.ratings["valence_raw"]))
    expected = {"wide_stimulus": [("column", "img01.png", 5.0), ("raw", "img01.png", 4.0),
                                  ("row", "img01.png", 3.0)],
                "wide_rater": [("P1", "raw", 4.0), ("P1", "row", 3.0)]}[layout]
    assert got == expected


def test_vote_file_whose_id_column_is_called_row(index) -> None:
    frame = read_table("r.csv", b"row,neutral,happiness,anger\nimg01.png,1,2,0\n")
    prepared = prepare_ratings(frame, detect_mapping(frame, index, layout="votes"), index=index)
    assert prepared.ok and prepared.ratings["emotion"].tolist() == ["neutral", "happiness", "happiness"]


def test_vote_counts_that_would_expand_into_millions_of_ratings_are_refused(index) -> None:
    text = "image,neutral,happiness,anger\n" + "".join(
        f"{name},9000,9000,9000\n" for name in NAMES * 40
    )
    with pytest.raises(MappingError, match="add up to 3,240,000 ratings, above the limit"):
        prepare(text, index)


def test_a_rater_id_too_long_for_the_database_is_a_row_error(index) -> None:
    prepared = prepare(f"rater,stimulus,valence\n{'x' * 201},img01.png,5\nP2,img01.png,5\n", index)
    assert prepared.errors[["row", "kind"]].values.tolist() == [[2, "too_long"]]
    assert prepared.ratings["rater"].tolist() == ["P2"]


# ------------------------------------------------------------------------------------- images

COLOURS = np.array([
    [[230, 20, 20], [20, 200, 20], [20, 20, 230]],
    [[230, 230, 20], [230, 20, 230], [20, 230, 230]],
], dtype=np.uint8)
BLOCK = 16


def blocks(grid: np.ndarray) -> Image.Image:
    return Image.fromarray(np.kron(grid, np.ones((BLOCK, BLOCK, 1), dtype=np.uint8)))


# Where the stored pixel grid S ends up when displayed, read off the EXIF 2.32 definition of
# the Orientation tag ("the 0th row / 0th column of the stored image is at the visual ...").
EXIF_DISPLAY = {
    1: lambda s: s,                          # 0th row top, 0th column left
    2: lambda s: s[:, ::-1],                 # 0th row top, 0th column right
    3: lambda s: s[::-1, ::-1],              # 0th row bottom, 0th column right
    4: lambda s: s[::-1, :],                 # 0th row bottom, 0th column left
    5: lambda s: s.transpose(1, 0, 2),       # 0th row left, 0th column top
    6: lambda s: np.rot90(s, -1),            # 0th row right, 0th column top
    7: lambda s: s.transpose(1, 0, 2)[::-1, ::-1],  # 0th row right, 0th column bottom
    8: lambda s: np.rot90(s, 1),             # 0th row left, 0th column bottom
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_displayed_as_the_standard_says(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image, _ = open_image(encode(blocks(COLOURS), "JPEG", quality=95, exif=exif.tobytes()))
    expected = EXIF_DISPLAY[orientation](COLOURS)
    pixels = np.asarray(image).astype(int)
    assert pixels.shape == (expected.shape[0] * BLOCK, expected.shape[1] * BLOCK, 3)
    centres = pixels[BLOCK // 2::BLOCK, BLOCK // 2::BLOCK]
    assert np.abs(centres - expected.astype(int)).max() < 40


def test_cmyk_jpeg_keeps_its_colours() -> None:
    red = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    image, media_type = open_image(encode(red, "JPEG", quality=95))
    assert media_type == "image/jpeg" and image.mode == "RGB"
    assert np.abs(np.asarray(image)[8, 8].astype(int) - [255, 0, 0]).max() < 30


def test_dark_sixteen_bit_png_stays_dark() -> None:
    """16-bit values map by /257 (the PNG sample depth), never stretched per image."""
    dark = np.full((4, 6), 2570, dtype=np.uint16)
    dark[0, 0] = 5140
    image, _ = open_image(encode(Image.fromarray(dark), "PNG"))
    pixels = np.asarray(image)
    assert pixels[1, 1].tolist() == [10, 10, 10] and pixels[0, 0].tolist() == [20, 20, 20]


def test_palette_png_with_transparency_and_grayscale() -> None:
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    image, _ = open_image(encode(palette, "PNG", transparency=0))
    pixels = np.asarray(image)
    assert pixels[0, 0].tolist() == [255, 255, 255] and pixels[2, 2].tolist() == [200, 30, 30]
    gray, _ = open_image(encode(Image.new("L", (4, 4), 77), "PNG"))
    assert np.asarray(gray)[0, 0].tolist() == [77, 77, 77]


@pytest.mark.parametrize(("fmt", "message"), [
    ("GIF", "GIF images are not supported"),
    ("WEBP", "animated WEBP images are not supported .2 frames"),
    ("PNG", "animated PNG images are not supported .2 frames"),
])
def test_animated_images_are_refused(fmt: str, message: str) -> None:
    """Decision: raters saw the animation, a model would see one frame; ask for the still."""
    first, second = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    data = encode(first, fmt, save_all=True, append_images=[second])
    with pytest.raises(ImageError, match=message):
        open_image(data)
    assert open_image(encode(first, "WEBP"))[1] == "image/webp"  # a still WebP is fine


def run_import(sessions, study_id: int, files, **options):
    with sessions.begin() as session:
        return import_files(session, study_id, files, **options, actor=Role.OPERATOR)


def test_wrong_extension_is_decoded_by_content_and_stored_with_its_real_type(sessions, study) -> None:
    jpeg = encode(Image.new("RGB", (8, 8), "green"), "JPEG")
    report = run_import(sessions, study, [("face.jpg", noise_png(1)), ("other.png", jpeg)])
    assert [entry.status for entry in report.entries] == ["added", "added"]
    with sessions() as session:
        types = dict(session.execute(select(Stimulus.path, Stimulus.media_type).where(
            Stimulus.path.in_(["face.jpg", "other.png"]))).all())
    assert types == {"face.jpg": "image/png", "other.png": "image/jpeg"}


def test_zero_byte_uploads_are_reported_everywhere(sessions, study) -> None:
    report = run_import(sessions, study, [("face.jpg", b"")])
    assert report.errors[0].message.startswith("the file is empty (0 bytes)")
    with pytest.raises(TableError, match="^r.csv: the file is empty"):
        read_table("r.csv", b"")
    with pytest.raises(CardError, match="card field `id`: is required"):
        card_module.validate_card(parse_card_text(b""))


# -------------------------------------------------------------------------------------- cards


@pytest.mark.parametrize(("text", "message"), [
    ("{" + '"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ("a = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (b"\xff\xfeid = 'x'", "not UTF-8 text"),
])
def test_card_text_that_cannot_be_parsed(text, message) -> None:
    with pytest.raises(CardError, match=f"^the card is not valid TOML/JSON: .*{message}"):
        parse_card_text(text)


def test_card_saved_with_a_byte_order_mark_is_read() -> None:
    text = "\ufeff" + card_text("tiny")
    assert parse_card_text(text)["id"] == "tiny"
    assert parse_card_text(text.encode("utf-8"))["id"] == "tiny"


def test_json_nulls_in_a_card_count_as_absent() -> None:
    data = {**parse_card_text(card_text("tiny")), "params": None, "paper": None, "labels": None}
    with pytest.raises(CardError, match="`labels` names 0"):
        card_module.validate_card(data)
    data["labels"] = parse_card_text(card_text("tiny"))["labels"]
    spec = card_module.card_spec(card_module.validate_card(data), "0" * 64)
    assert (spec.params, spec.paper) == (0, "")


@pytest.mark.parametrize(("line", "message"), [
    ("std = [nan, 0.5, 0.5]", r"`input.std`: expected 3 finite numbers, got \[nan, 0.5, 0.5\]"),
    ("mean = [0.5, inf, 0.5]", r"`input.mean`: expected 3 finite numbers"),
    ("scale = inf", r"`input.scale`: must be a finite number above 0, got inf"),
    ("scale = 0", r"`input.scale`: must be a finite number above 0, got 0"),
    ("resize_short_side = 16", r"`input.resize_short_side`: must be at least the larger side"),
    ("size = true", r"`input.size`: expected int or list, got True"),
])
def test_card_numbers_that_would_poison_every_prediction(line: str, message: str) -> None:
    key = line.split(" = ")[0]
    text = "\n".join(
        line if raw.startswith(f"{key} = ") else raw for raw in card_text("tiny").splitlines()
    )
    if line not in text:
        text = text.replace("[input]", f"[input]\n{line}")
    with pytest.raises(CardError, match=message):
        card_module.validate_card(parse_card_text(text))


# ----------------------------------------------------------------------------------- archives


def test_ten_thousand_tiny_entries_are_all_reported(sessions, study) -> None:
    archive = zip_of([(f"notes/{i}.txt", b"x") for i in range(10_000)])
    started = time.perf_counter()
    report = run_import(sessions, study, [("many.zip", archive)])
    assert len(report.errors) == 10_000 and time.perf_counter() - started < 20
    limited = run_import(sessions, study, [("many.zip", archive)], limits=ZipLimits(max_entries=9_999))
    assert [entry.message for entry in limited.entries] == [
        "the ZIP has 10,000 entries, more than the 9,999 limit. Split it into smaller ZIPs."
    ]


@pytest.mark.parametrize("entries", [[], [("set1/", b""), ("set1/sub/", b"")]])
def test_an_archive_without_files_gets_a_line(sessions, study, entries) -> None:
    report = run_import(sessions, study, [("empty.zip", zip_of(entries))])
    assert [(e.file, e.status) for e in report.entries] == [("empty.zip", "error")]
    assert "contains no files" in report.entries[0].message


def test_nested_zip_and_empty_entry_name(sessions, study) -> None:
    inner = zip_of([("a.png", noise_png(2))])
    report = run_import(sessions, study, [("outer.zip", zip_of([("inner.zip", inner), ("", noise_png(3))]))])
    messages = {entry.file: entry.message for entry in report.entries}
    assert "extract it and upload the inner ZIP" in messages["outer.zip: inner.zip"]
    assert messages["outer.zip: "] == "the file has no name. Give it a name and upload again."


def test_dot_and_doubled_separators_in_names(sessions, study) -> None:
    archive = zip_of([(".", noise_png(12)), ("a/./b.png", noise_png(13)), ("c//d.png", noise_png(14))])
    report = run_import(sessions, study, [("dots.zip", archive), (".", noise_png(15))])
    assert sorted((e.file, e.path, e.status) for e in report.entries) == [
        (".", "", "error"), ("dots.zip: .", "", "error"),
        ("dots.zip: a/./b.png", "a/b.png", "added"), ("dots.zip: c//d.png", "c/d.png", "added"),
    ]


def test_zip_of_an_unsupported_version_is_reported(sessions, study) -> None:
    archive = bytearray(zip_of([("a.png", noise_png(16))]))
    directory = archive.index(b"PK\x01\x02")
    archive[directory + 6] = 64  # "version needed to extract": 6.4, which zipfile cannot read
    report = run_import(sessions, study, [("new.zip", bytes(archive))])
    assert [(e.status, e.message) for e in report.entries] == [("error", (
        "not a readable ZIP archive (zip file version 6.4). Re-create the ZIP and upload again."
    ))]


def test_duplicate_entry_names_in_one_archive(sessions, study) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = zip_of([("x.png", noise_png(4)), ("x.png", noise_png(5)), ("y.png", noise_png(6)),
                          ("y.png", noise_png(6))])
    report = run_import(sessions, study, [("dup.zip", archive)])
    assert [e.status for e in report.entries] == ["added", "conflict", "added", "duplicate"]


def test_corrupt_compressed_entry_is_reported_and_the_others_imported(sessions, study) -> None:
    archive = bytearray(zip_of([("a.png", noise_png(7, (64, 64))), ("b.png", noise_png(8))],
                               zipfile.ZIP_DEFLATED))
    start = archive.index(b"a.png") + len("a.png")
    archive[start + 40:start + 60] = bytes(range(20))  # inside a.png's deflate stream
    report = run_import(sessions, study, [("bad.zip", bytes(archive))])
    assert {e.file: e.status for e in report.entries} == {"bad.zip: a.png": "error", "bad.zip: b.png": "added"}
    assert "could not read the file" in report.errors[0].message


# ------------------------------------------------------------------------- transaction safety

GOOD = "rater,stimulus,emotion,valence\nP1,img01.png,happy,9\nP2,img02.png,sad,1\n"


def store_ratings(sessions, study_id: int, text: str, name: str) -> int:
    data = text.encode()
    frame = read_table(name, data)
    with sessions.begin() as session:
        index = rating_db.stimulus_index(session, study_id)
        prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index, scales=SAM)
        return rating_db.import_batch(session, study_id, prepared, file_name=name, data=data, actor=Role.OPERATOR).batch_id


def test_failing_rating_insert_keeps_earlier_batches_and_stores_nothing(sessions, study, monkeypatch) -> None:
    first = store_ratings(sessions, study, GOOD, "first.csv")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rating_db, "_rating_columns", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        store_ratings(sessions, study, GOOD.replace("P1", "P3"), "second.csv")
    with sessions() as session:
        assert session.scalars(select(RatingBatch.id)).all() == [first]
    assert count(sessions, Rating) == 2


FACEREADER = "Filename,Happy,Sad\nimg01.png,0.9,0.1\nimg02.png,0.2,0.8\n"


def test_failing_prediction_replace_keeps_the_earlier_import(sessions, study, monkeypatch) -> None:
    first = pi.import_predictions(sessions, study, "tool", "a.csv", FACEREADER.encode(), actor=Role.OPERATOR)
    assert first.stored == 2

    def broken(*args, **kwargs):
        raise RuntimeError("connection lost")

    monkeypatch.setattr(pi, "upsert_registered_model", broken)
    with pytest.raises(RuntimeError, match="connection lost"):
        pi.import_predictions(sessions, study, "tool", "b.csv", FACEREADER.replace("0.9", "0.5").encode(),
                              replace=True, actor=Role.OPERATOR)
    with sessions() as session:
        assert session.get(RegisteredModel, "tool").card["source_file"] == "a.csv"
        shas = set(session.scalars(select(Prediction.checkpoint_sha256)))
    assert shas == {first.sha256} and count(sessions, Prediction) == 2


def test_failing_card_registration_keeps_the_registered_card(sessions, data_dir, monkeypatch) -> None:
    model = onnx_bytes(TinyNet())
    with sessions.begin() as session:
        catalog.register_card(session, card_text("tiny"), model, actor=Role.OPERATOR)
    with sessions() as session:
        before = dict(session.get(RegisteredModel, "tiny").card)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(catalog, "_upsert_row", broken)
    changed = card_text("tiny").replace("Tiny test model", "Tiny v2")
    with pytest.raises(RuntimeError, match="disk full"):
        with sessions.begin() as session:
            catalog.register_card(session, changed, model, replace=True, actor=Role.OPERATOR)
    with sessions() as session:
        assert session.get(RegisteredModel, "tiny").card == before


def test_failing_stimulus_import_stores_nothing_of_that_upload(sessions, study, monkeypatch) -> None:
    before = count(sessions, Stimulus)
    calls = []
    original = stimuli_module._Importer._insert

    def fail_second(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        original(self, *args)

    monkeypatch.setattr(stimuli_module, "INSERT_CHUNK", 1)  # the first row is inserted already
    monkeypatch.setattr(stimuli_module._Importer, "_insert", fail_second)
    with pytest.raises(RuntimeError, match="disk full"):
        run_import(sessions, study, [("a.png", noise_png(10)), ("b.png", noise_png(11))])
    assert count(sessions, Stimulus) == before


def test_failing_metadata_import_keeps_stored_values(sessions, study, monkeypatch) -> None:
    with sessions.begin() as session:
        import_metadata(session, study, "m.csv", b"file,age\nimg01.png,30\n", actor=Role.OPERATOR)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(stimuli_module, "_apply_intended", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        with sessions.begin() as session:
            import_metadata(session, study, "m2.csv", b"file,age,emotion\nimg01.png,99,happy\n", actor=Role.OPERATOR)
    with sessions() as session:
        assert session.execute(select(StimulusAttribute.key, StimulusAttribute.value)).all() == [("age", "30")]
        assert session.scalar(select(Stimulus.intended_emotion).where(Stimulus.path == "set/img01.png")) is None
