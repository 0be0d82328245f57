"""Rating files: reading, layout and column detection, label/scale mapping, row-level validation."""

from __future__ import annotations

import io
import unicodedata

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.io.tabular import read_table
from core.ratings.labels import CANONICAL
from core.ratings.layouts import (
    ColumnMapping,
    MappingError,
    StimulusIndex,
    assign_vote_raters,
    detect_layout,
    detect_mapping,
    label_summary,
    mapping_problems,
    numeric_summary,
    parse_label_codes,
    prepare_ratings,
    rejected_rows_table,
    split_cell_header,
    to_csv_bytes,
)
from core.ratings.scales import PRESETS

STIMULI = ["img01.png", "img02.png", "img03.png", "행복.png"]
SAM = {"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]}


@pytest.fixture
def index() -> StimulusIndex:
    return StimulusIndex.build({name: i + 1 for i, name in enumerate(STIMULI)})


def table(text: str, name: str = "ratings.csv", encoding: str = "utf-8") -> pd.DataFrame:
    return read_table(name, text.encode(encoding))


def prepare(text: str, index: StimulusIndex, name: str = "ratings.csv", **options):
    frame = table(text, name)
    mapping = options.pop("mapping", None) or detect_mapping(frame, index, options.get("codes"))
    options.setdefault("scales", SAM)
    return prepare_ratings(frame, mapping, index=index, **options)


def errors_by_row(prepared) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for row, kind in zip(prepared.errors["row"], prepared.errors["kind"]):
        grouped.setdefault(int(row), []).append(kind)
    return grouped


# ------------------------------------------------------------------------------ long layout


def test_long_file_becomes_canonical_normalised_rows(index: StimulusIndex) -> None:
    prepared = prepare(
        "rater,stimulus,emotion,valence,arousal\n"
        "P1,img01.png,Happy,9,1\n"
        "P1,img02.png,angry,5,3\n",
        index,
    )
    assert prepared.ok and prepared.layout == "long"
    rows = prepared.ratings
    assert rows["stimulus_id"].tolist() == [1, 2]
    assert rows["emotion"].tolist() == ["happiness", "anger"]
    assert rows["emotion_raw"].tolist() == ["Happy", "angry"]
    # SAM 1-9 normalised: 9 -> 1, 5 -> 0, 1 -> -1, 3 -> -0.5; raw kept.
    assert rows["valence"].tolist() == [1.0, 0.0]
    assert rows["arousal"].tolist() == [-1.0, -0.5]
    assert rows["valence_raw"].tolist() == [9.0, 5.0]


def test_european_excel_export_semicolons_decimal_commas_and_bom(index: StimulusIndex) -> None:
    text = "Teilnehmer;Bild;Valence;Arousal\nP1;img01.png;4,5;7\nP2;img01.png;-0,5;0,25\n"
    frame = read_table("export.csv", "\ufeff".encode() + text.replace("Teilnehmer", "rater")
                       .replace("Bild", "image").encode("utf-8"))
    mapping = detect_mapping(frame, index)
    assert mapping.columns == {"rater": "rater", "stimulus": "image", "valence": "Valence",
                               "arousal": "Arousal"}
    prepared = prepare_ratings(
        frame, mapping, index=index,
        scales={"valence": PRESETS["sam9"], "arousal": PRESETS["sam9"]},
    )
    assert prepared.ratings["valence_raw"].tolist() == [4.5]
    assert errors_by_row(prepared) == {3: ["out_of_scale", "out_of_scale"]}


def test_tsv_and_xlsx_give_the_same_rows_as_csv(index: StimulusIndex) -> None:
    frame = pd.DataFrame({
        "rater": ["P1", "P2"], "stimulus": ["img01.png", "img02.png"],
        "emotion": ["sad", "surprised"], "valence": [2.5, 8], "arousal": [3, 9],
    })
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    csv = prepare(frame.to_csv(index=False), index)
    tsv = prepare(frame.to_csv(index=False, sep="\t"), index, name="ratings.tsv")
    xlsx_frame = read_table("ratings.xlsx", buffer.getvalue())
    xlsx = prepare_ratings(xlsx_frame, detect_mapping(xlsx_frame, index), index=index, scales=SAM)
    for other in (tsv, xlsx):
        pd.testing.assert_frame_equal(other.ratings, csv.ratings)


def test_korean_labels_and_file_names_in_nfd_match(index: StimulusIndex) -> None:
    decomposed = unicodedata.normalize("NFD", "행복.png")  # as macOS writes it
    prepared = prepare(
        f"평가자,자극,감정,정서가,각성\nP1,{decomposed},행복,7,3\nP2,{decomposed},분노,2,8\n",
        index,
    )
    assert prepared.ok, prepared.errors
    assert prepared.ratings["stimulus_id"].tolist() == [4, 4]
    assert prepared.ratings["emotion"].tolist() == ["happiness", "anger"]


def test_cp949_file_with_korean_labels(index: StimulusIndex) -> None:
    frame = table("rater,stimulus,emotion\nP1,img01.png,슬픔\n", encoding="cp949")
    prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index)
    assert prepared.ratings["emotion"].tolist() == ["sadness"]


def test_stimulus_lookup_case_insensitive_by_default_and_sensitive_when_declared() -> None:
    text = "rater,stimulus,emotion\nP1,IMG01.PNG,sad\n"
    loose = StimulusIndex.build({"img01.png": 1}, case_insensitive=True)
    strict = StimulusIndex.build({"img01.png": 1}, case_insensitive=False)
    assert prepare(text, loose).ok
    assert errors_by_row(prepare(text, strict)) == {2: ["unknown_stimulus"]}


def test_stem_key_mode_accepts_ids_with_or_without_extension() -> None:
    index = StimulusIndex.build({"img01": 1}, mode="stem")
    prepared = prepare("rater,stimulus,emotion\nP1,img01,sad\nP2,img01.jpg,sad\n", index)
    assert prepared.ratings["stimulus_id"].tolist() == [1, 1]


def test_code_map_translates_numeric_labels_including_excel_floats(index: StimulusIndex) -> None:
    codes = parse_label_codes(["1=anger", "2 = happy"])
    assert codes == {"1": "anger", "2": "happiness"}
    prepared = prepare(
        "rater,stimulus,emotion\nP1,img01.png,1\nP1,img02.png,2.0\nP1,img03.png,3\n",
        index, codes=codes,
    )
    assert prepared.ratings["emotion"].tolist() == ["anger", "happiness"]
    assert errors_by_row(prepared) == {4: ["unknown_label"]}
    assert prepared.label_map == codes


@pytest.mark.parametrize("bad", ["1", "1=", "=anger", "1=furious"])
def test_parse_label_codes_rejects_bad_items(bad: str) -> None:
    with pytest.raises(ValueError, match="CODE=LABEL"):
        parse_label_codes([bad])


# ---------------------------------------------------------- validation: every error kind, rows


def test_every_error_kind_is_reported_with_its_file_row(index: StimulusIndex) -> None:
    """Row numbers count the header as row 1 and keep blank lines (row 4 below is blank)."""
    prepared = prepare(
        "rater,stimulus,emotion,valence,arousal\n"
        "P1,img01.png,happy,7,5\n"          # row 2: fine
        "P1,img99.png,happy,7,5\n"          # row 3: unknown stimulus
        "\n"                                # row 4: blank line, skipped
        "P2,img01.png,furious,7,5\n"        # row 5: unknown label
        "P2,img02.png,sad,12,5\n"           # row 6: out of scale
        "P2,img03.png,sad,high,5\n"         # row 7: not a number
        ",img03.png,sad,3,5\n"              # row 8: missing rater
        "P3,,sad,3,5\n"                     # row 9: missing stimulus
        "P3,img01.png,,,\n"                 # row 10: no value at all
        "P4,img02.png,sad,3,4\n"            # row 11: duplicate of row 12
        "P4,IMG02.png,sad,3,4\n",           # row 12: duplicate (same stimulus, case differs)
        index, repeats="refuse",
    )
    assert errors_by_row(prepared) == {
        3: ["unknown_stimulus"], 5: ["unknown_label"], 6: ["out_of_scale"],
        7: ["non_numeric"], 8: ["missing"], 9: ["missing"], 10: ["missing"],
        11: ["duplicate"], 12: ["duplicate"],
    }
    assert prepared.ratings["row"].tolist() == [2]
    assert prepared.n_file_rows == 10  # data rows; the blank line is not one
    messages = dict(zip(prepared.errors["row"], prepared.errors["message"]))
    assert "rows 11, 12" in messages[11]
    assert "img01.png" in messages[3]  # the hint shows how the study names its stimuli
    columns = dict(zip(prepared.errors["row"], prepared.errors["column"]))
    assert columns[6] == "valence" and columns[3] == "stimulus" and columns[8] == "rater"


def test_a_row_with_several_problems_lists_each(index: StimulusIndex) -> None:
    prepared = prepare("rater,stimulus,emotion,valence\nP1,nope.png,furious,0\n", index)
    assert sorted(prepared.errors["kind"]) == ["out_of_scale", "unknown_label", "unknown_stimulus"]
    assert prepared.rejected_rows == [2]


def test_rejected_rows_table_is_the_original_rows_with_reasons(index: StimulusIndex) -> None:
    text = "rater,stimulus,emotion\nP1,img01.png,sad\nP1,img02.png,furious\nP2,행복.png,joy\n"
    frame = table(text)
    prepared = prepare_ratings(frame, detect_mapping(frame, index), index=index)
    rejected = rejected_rows_table(frame, prepared.errors)
    assert rejected["file_row"].tolist() == [3]
    assert rejected["emotion"].tolist() == ["furious"]
    assert "unknown label" in rejected["problems"].iloc[0]
    data = to_csv_bytes(rejected)
    assert data.startswith(b"\xef\xbb\xbf")
    again = read_table("rejected.csv", data)
    assert list(again.columns[:3]) == ["rater", "stimulus", "emotion"]


# ------------------------------------------------------------------------ mapping detection


def test_split_cell_header_forms() -> None:
    assert split_cell_header("img01_valence") == ("img01", "valence")
    assert split_cell_header("img01.png:arousal") == ("img01.png", "arousal")
    assert split_cell_header("Valence - img01.png") == ("img01.png", "valence")
    assert split_cell_header("P01 Emotion") == ("P01", "emotion")
    assert split_cell_header("face_a") == ("face_a", None)  # single letters are not read
    assert split_cell_header("img01.png") == ("img01.png", None)


def test_detect_layout_for_each_layout(index: StimulusIndex) -> None:
    assert detect_layout(table("rater,stimulus,valence\nP1,img01.png,3\n"), index) == "long"
    assert detect_layout(
        table("participant,img01_valence,img01_arousal,img02_valence\nP1,1,2,3\n"), index
    ) == "wide_rater"
    assert detect_layout(table("participant,img01.png,img02.png\nP1,1,2\n"), index) == "wide_rater"
    assert detect_layout(table("image,P01,P02\nimg01.png,1,2\nimg02.png,3,4\n"), index) == (
        "wide_stimulus"
    )
    assert detect_layout(
        table("stimulus,P01_valence,P02_valence\nimg01,1,2\n"), None
    ) == "wide_stimulus"
    fer = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    assert detect_layout(table(fer + "Training,img01.png,4,0,0,1,0,0,0,0,5,0\n"), index) == "votes"


def test_mapping_override_picks_other_columns(index: StimulusIndex) -> None:
    text = "rater,stimulus,val_first,valence\nP1,img01.png,2,8\n"
    frame = table(text)
    mapping = detect_mapping(frame, index)
    assert mapping.columns["valence"] == "valence"
    mapping.columns["valence"] = "val_first"
    prepared = prepare_ratings(frame, mapping, index=index, scales=SAM)
    assert prepared.ratings["valence_raw"].tolist() == [2.0]
    assert prepared.mapping["columns"]["valence"] == "val_first"


def test_mapping_problems_name_what_to_fix(index: StimulusIndex) -> None:
    frame = table("rater,stimulus,valence\nP1,img01.png,3\n")
    mapping = detect_mapping(frame, index)
    assert mapping_problems(frame, mapping, {}, None, index) == [
        "declare the scale of valence (e.g. SAM 1-9, -100..100, 0..1 or MIN..MAX)"
    ]
    broken = ColumnMapping("long", {"rater": "rater", "stimulus": "nope", "valence": "valence"})
    assert "'nope'" in mapping_problems(frame, broken, SAM, None, index)[0]
    with pytest.raises(MappingError) as error:
        prepare_ratings(frame, ColumnMapping("long", {"rater": "rater"}), index=index)
    assert "choose the stimulus column" in error.value.problems


# --------------------------------------------------------------------------- wide layouts


def test_wide_rater_with_mixed_header_styles(index: StimulusIndex) -> None:
    prepared = prepare(
        "participant,img01.png_valence,img01.png:arousal,img02.png_emotion,age\n"
        "P1,7,3,happy,30\n"
        "P2,,5,,41\n",
        index,
    )
    assert prepared.ok, prepared.errors
    assert prepared.mapping["ignored"] == ["age"]
    rows = prepared.ratings.sort_values(["rater", "stimulus_id"])
    assert rows[["rater", "stimulus_id"]].values.tolist() == [["P1", 1], ["P1", 2], ["P2", 1]]
    assert rows["valence_raw"].tolist()[0] == 7.0 and rows["emotion"].tolist()[1] == "happiness"


def test_wide_rater_single_dimension_needs_a_declared_dimension(index: StimulusIndex) -> None:
    frame = table("participant,img01.png,img02.png\nP1,7,3\nP2,1,9\n")
    mapping = detect_mapping(frame, index)
    assert any("name no dimension" in p for p in mapping_problems(frame, mapping, SAM, None, index))
    mapping.dimension = "arousal"
    prepared = prepare_ratings(frame, mapping, index=index, scales=SAM)
    assert prepared.ratings["arousal_raw"].tolist() == [7.0, 3.0, 1.0, 9.0]
    assert prepared.ratings["valence"].isna().all()


def test_wide_stimulus_rater_columns(index: StimulusIndex) -> None:
    frame = table("image,P01,P02,notes\nimg01.png,1,2,blurry\nimg02.png,3,,\nimg99.png,1,1,\n")
    mapping = detect_mapping(frame, index)
    assert mapping.layout == "wide_stimulus" and mapping.ignored == ["notes"]
    mapping.dimension = "valence"
    prepared = prepare_ratings(frame, mapping, index=index, scales=SAM)
    assert sorted(zip(prepared.ratings["rater"], prepared.ratings["stimulus_id"])) == [
        ("P01", 1), ("P01", 2), ("P02", 1)
    ]
    assert errors_by_row(prepared) == {4: ["unknown_stimulus", "unknown_stimulus"]}


def test_wide_stimulus_column_groups_per_rater_and_dimension(index: StimulusIndex) -> None:
    prepared = prepare(
        "image;P01_valence;P01_arousal;P02_valence;P02_emotion\n"
        "img01.png;7;2,5;1;분노\n"
        "img02.png;;;9;happy\n",
        index,
    )
    assert prepared.ok and prepared.layout == "wide_stimulus", prepared.errors
    rows = prepared.ratings.set_index(["rater", "stimulus_id"]).sort_index()
    assert rows.index.tolist() == [("P01", 1), ("P02", 1), ("P02", 2)]
    assert rows.loc[("P01", 1), "arousal_raw"] == 2.5
    assert rows["emotion"].tolist()[1:] == ["anger", "happiness"]


def test_wide_duplicate_columns_reject_the_row(index: StimulusIndex) -> None:
    prepared = prepare("participant,img01.png_valence,IMG01.png_valence\nP1,3,4\nP2,3,\n", index)
    assert errors_by_row(prepared) == {2: ["duplicate", "duplicate"]}
    assert prepared.ratings["rater"].tolist() == ["P2"]


def test_wide_rater_repeated_rater_rows_are_repeats_unless_refused(index: StimulusIndex) -> None:
    text = "participant,img01.png_valence\nP1,3\nP1,4\n"
    refused = prepare(text, index, repeats="refuse")
    assert errors_by_row(refused) == {2: ["duplicate"], 3: ["duplicate"]}
    kept = prepare(text, index)
    assert kept.ok and kept.mapping["repeats"] == "average"
    assert kept.ratings[["valence_raw", "occurrence"]].values.tolist() == [[3, 1], [4, 2]]


# ------------------------------------------------------------------------------------ votes

FER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"


def test_votes_expand_into_anonymous_raters(index: StimulusIndex) -> None:
    prepared = prepare(FER + "Training,img01.png,4,0,0,1,0,0,0,0,5,0\n"
                       "Training,img02.png,0,10,0,0,0,0,0,0,0,0\n", index)
    assert prepared.ok and prepared.layout == "votes"
    assert prepared.mapping["ignored"] == ["Usage", "unknown", "NF"]
    first = prepared.ratings.loc[prepared.ratings["stimulus_id"] == 1]
    assert first["emotion"].tolist() == ["neutral"] * 4 + ["sadness"]
    assert first["rater"].tolist() == [f"votes#new:{k}" for k in range(1, 6)]
    assert len(prepared.ratings) == 15
    final = assign_vote_raters(prepared.ratings, 42)
    assert final["rater"].iloc[0] == "votes#42:1"


def test_vote_errors(index: StimulusIndex) -> None:
    prepared = prepare(
        FER
        + "T,img01.png,1,x,0,0,0,0,0,0,0,0\n"      # row 2: not a number
        + "T,img02.png,1,-1,0,0,0,0,0,0,0,0\n"     # row 3: negative count
        + "T,img03.png,0,0,0,0,0,0,0,0,3,0\n"      # row 4: no emotion votes
        + "T,img02.png,1,0,0,0,0,0,0,0,0,0\n"      # row 5: img02 twice (with row 3)
        + "T,img77.png,1,0,0,0,0,0,0,0,0,0\n",     # row 6: unknown stimulus
        index,
    )
    assert errors_by_row(prepared) == {
        2: ["non_numeric"], 3: ["duplicate", "out_of_scale"], 4: ["missing"], 5: ["duplicate"],
        6: ["unknown_stimulus"],
    }
    assert prepared.ratings.empty


# -------------------------------------------------------------------------- helpers for the UI


def test_label_and_numeric_summaries(index: StimulusIndex) -> None:
    frame = table("rater,stimulus,emotion,valence\nP1,img01.png,1,2\nP2,img01.png,sad,8,5\n"
                  .replace(",5\n", "\n"))
    mapping = detect_mapping(frame, index)
    labels = label_summary(frame, mapping, {"1": "anger"})
    assert dict(zip(labels["raw"], labels["canonical"])) == {"1": "anger", "sad": "sadness"}
    assert numeric_summary(frame, mapping, index) == {"valence": (2.0, 8.0)}


# ----------------------------------------------------------------------- long == wide property


@st.composite
def rating_sets(draw) -> list[tuple[str, str, str, int, int]]:
    raters = draw(st.lists(st.sampled_from(["P1", "P2", "P3", "평가자4"]), min_size=1, unique=True))
    cells = []
    for rater in raters:
        stimuli = draw(st.lists(st.sampled_from(STIMULI), min_size=1, unique=True))
        for stimulus in stimuli:
            cells.append((
                rater, stimulus, draw(st.sampled_from(CANONICAL)),
                draw(st.integers(1, 9)), draw(st.integers(1, 9)),
            ))
    return cells


@settings(max_examples=15, deadline=None)
@given(rating_sets())
def test_long_and_wide_forms_import_identical_rows(cells) -> None:
    index = StimulusIndex.build({name: i + 1 for i, name in enumerate(STIMULI)})
    long = pd.DataFrame(cells, columns=["rater", "stimulus", "emotion", "valence", "arousal"])
    wide = long.pivot(index="rater", columns="stimulus")
    wide.columns = [f"{stimulus}_{dim}" for dim, stimulus in wide.columns]
    wide = wide.reset_index().rename(columns={"rater": "participant"})

    def canonical(text: str, name: str) -> pd.DataFrame:
        prepared = prepare(text, index, name=name)
        assert prepared.ok, prepared.errors
        rows = prepared.ratings.drop(columns="row").sort_values(["rater", "stimulus_id"])
        return rows.reset_index(drop=True)

    from_long = canonical(long.to_csv(index=False), "long.csv")
    from_wide = canonical(wide.to_csv(index=False, sep=";"), "wide.csv")
    pd.testing.assert_frame_equal(from_long, from_wide, check_dtype=False)
