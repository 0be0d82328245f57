"""AppTest smoke and upload scenarios for the Home page (app.py) and pages/1_Stimuli.py.

The ``data_dir`` fixture points FACEAGREE_DB_URL / FACEAGREE_DATA_DIR at a temporary folder,
which ui.chrome reads, so every test runs the pages on its own SQLite file.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.access import Role
from db import stimuli as stimulus_db
from db.models import Rating, RatingBatch, Stimulus, Study
from db.queries import get_or_create_study
from tests.markdown_text import shown

TIMEOUT = 60
ROOT = Path(__file__).resolve().parents[1]
HOME, STIMULI = str(ROOT / "app.py"), str(ROOT / "pages" / "1_Stimuli.py")


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def faces_zip(n: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(n):
            archive.writestr(f"set/face_{i:02d}.png", png(i))
    return buffer.getvalue()


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def texts(elements) -> list[str]:
    return [shown(element.value) for element in elements]


@pytest.fixture
def study_id(sessions) -> int:
    with sessions.begin() as session:
        return stimulus_db.create_study(session, "Pilot", actor=Role.OPERATOR).id


def test_home_without_study_then_create_one(sessions) -> None:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Create a study or load the demo study to begin." in texts(at.info)
    at.text_input[0].input("Main study")
    at.selectbox[0].select("path")
    button(at, "Create study").click().run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["Stimuli", "Rating batches", "Ratings", "Raters"]
    with sessions() as session:
        study = session.scalar(select(Study))
        assert (study.name, study.stimulus_key) == ("Main study", "path")
    at.text_input[0].input("Main study")
    button(at, "Create study").click().run()
    assert any("already exists" in text for text in texts(at.error))


def test_home_shows_coverage_gaps_and_checklist(sessions, study_id) -> None:
    with sessions.begin() as session:
        stimuli = [
            Stimulus(study_id=study_id, path=f"s{i}.png", sha256=f"{i:064d}", media_type="image/png",
                     width=1, height=1, thumbnail=b"")
            for i in range(3)
        ]
        batch = RatingBatch(study_id=study_id, file_name="r.csv", sha256="f" * 64, layout="long")
        session.add_all([*stimuli, batch])
        session.flush()
        session.add_all(
            Rating(batch_id=batch.id, stimulus_id=stimuli[i].id, rater=rater, emotion="anger")
            for i, raters in enumerate([["r1", "r2", "r3"], ["r1"], []])
            for rater in raters
        )
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["3", "1", "4", "3"]
    assert "2 stimuli have fewer than 3 raters." in texts(at.warning)
    gaps = at.dataframe[0].value
    assert gaps["stimulus"].tolist() == ["s2.png", "s1.png"] and gaps["raters"].tolist() == [0, 1]
    checklist = [link.label for link in at.get("page_link")] + texts(at.markdown)
    assert any(text.startswith("✅ Import stimulus images") for text in checklist)
    assert any(text.startswith("⬜ Attach metadata") for text in checklist)


def test_home_loads_the_demo_study(sessions) -> None:
    pytest.importorskip("core.workflows.demo")
    at = AppTest.from_file(HOME, default_timeout=300).run()
    button(at, "Load demo study").click().run()
    assert not at.exception
    with sessions() as session:
        assert session.scalar(select(Study.is_demo))
    assert int(at.metric[0].value) > 0


def test_stimuli_page_needs_a_study(sessions) -> None:
    at = AppTest.from_file(STIMULI, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("No study yet" in text for text in texts(at.info))


def test_stimuli_upload_gallery_detail_and_metadata(sessions, study_id) -> None:
    at = AppTest.from_file(STIMULI, default_timeout=TIMEOUT).run()
    assert not at.exception
    at.file_uploader(key="stimulus_files").set_value([
        ("faces.zip", faces_zip(3), "application/zip"),
        ("broken.png", b"definitely not a png", "image/png"),
    ])
    at.run()
    button(at, "Import images").click().run()
    assert not at.exception
    assert texts(at.warning) == [
        "Last import: 3 added, 0 duplicates skipped, 0 conflicts, 1 errors, 0 ignored."
    ]
    problems = at.dataframe[0].value
    assert problems["file"].tolist() == ["broken.png"] and "not an image" in problems["message"][0]
    assert "3 stimuli match." in texts(at.caption)
    assert [shown(caption) for image in at.image for caption in image.captions] == [
        f"set/face_{i:02d}.png" for i in range(3)
    ]

    at.text_input(key="gallery_search").input("face_01").run()
    assert "1 stimuli match." in texts(at.caption)
    button(at, "Details").click().run()
    assert not at.exception
    assert "set/face_01.png" in texts(at.subheader)
    assert len(at.image) == 2  # the full image of the detail view above the gallery
    next(box for box in at.selectbox if box.label == "Intended emotion").select("surprise")
    button(at, "Save intended emotion").click().run()
    with sessions() as session:
        assert session.scalar(
            select(Stimulus.intended_emotion).where(Stimulus.path == "set/face_01.png")
        ) == "surprise"

    at.file_uploader(key="metadata_file").set_value(
        ("meta.csv", "file;intended;poser\nface_01.png;행복;P7\nnope.png;sad;P1\n".encode(), "text/csv")
    )
    at.run()
    button(at, "Attach metadata").click().run()
    assert not at.exception
    assert any("1 of 2 rows matched" in text for text in texts(at.warning))
    with sessions() as session:
        assert session.scalar(
            select(Stimulus.intended_emotion).where(Stimulus.path == "set/face_01.png")
        ) == "happiness"


def test_stimuli_without_stored_images_show_placeholders(sessions, study_id) -> None:
    """A study imported without images (empty thumbnails, no blob files, as a benchmark
    database has) lists its stimuli with grey placeholders; the detail view says what is missing."""
    with sessions.begin() as session:
        session.add_all(
            Stimulus(study_id=study_id, path=f"fer{i:07d}.png", sha256=f"{i:064x}", media_type="image/png",
                     width=48, height=48, thumbnail=b"" if i else b"not a jpeg")
            for i in range(3)
        )
    at = AppTest.from_file(STIMULI, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [shown(caption) for image in at.image for caption in image.captions] == [
        f"fer{i:07d}.png" for i in range(3)
    ]
    assert any("no stored image" in text for text in texts(at.caption))
    at.button(key="detail_1").click().run()
    assert not at.exception
    assert any("missing" in text for text in texts(at.error))


def test_stimuli_page_key_mode_setting(sessions, study_id) -> None:
    with sessions.begin() as session:
        session.get(Study, study_id).stimulus_key = "path"
        session.add_all(
            Stimulus(study_id=study_id, path=path, sha256=str(i) * 64, media_type="image/png",
                     width=1, height=1, thumbnail=b"")
            for i, path in enumerate(["a/x.png", "b/x.png"])
        )
    at = AppTest.from_file(STIMULI, default_timeout=TIMEOUT).run()
    at.selectbox(key="key_mode").select("name")
    button(at, "Save stimulus id setting").click().run()
    assert any("ambiguous" in text for text in texts(at.error))
    at.selectbox(key="key_mode").select("path")
    at.checkbox(key="key_case").uncheck()
    button(at, "Save stimulus id setting").click().run()
    assert "Saved." in texts(at.success)
    with sessions() as session:
        assert session.get(Study, study_id).key_case_insensitive is False


def test_an_unknown_study_in_the_address_is_named(sessions) -> None:
    with sessions.begin() as session:
        get_or_create_study(session, "Only study", actor=Role.OPERATOR)
    at = AppTest.from_file(HOME, default_timeout=60)
    at.query_params["study"] = "999"
    at.run()
    assert any("study 999, which does not exist here" in shown(w.value) and "Only study" in shown(w.value)
               for w in at.warning)
    at.run()  # the address now names the study shown: no warning
    assert not any("does not exist here" in w.value for w in at.warning)


def test_the_router_lists_every_page_with_a_title() -> None:
    import ast

    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    listed = next(ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.Assign) and node.targets[0].id == "PAGES")
    assert listed[0][1] == "Home"
    assert sorted(path for path, _, _ in listed) == sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py"))
