"""Issue 10's walk in a real browser: a coauthor's first hour from an empty data folder to
downloaded tables, with no manual fix between the steps.

A study is created on Home; twelve face images arrive as one ZIP; a survey-tool wide export names
the stimuli by stem (``neutral_001``) and the wizard offers that naming; a long batch with one
valence typo (12 on 1-9) keeps the SAM 1-9 suggestion and flags the 12; a second coauthor, in a
second browser context, adds a batch while the first has the Agreement page open; FaceReader-style
predictions are imported on the Models page; the Agreement page's CSV names its batches.
"""

from __future__ import annotations

import random
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_app import VIEWPORT, choose, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "fearful")
STEMS = tuple(f"{emotion}_{number:03d}" for number in (1, 2) for emotion in EMOTIONS)
SAM = "SAM 1-9 (1..9)"
STUDY = "Pilot walk"
AGREEMENT_READY = "Leave-one-rater-out"


def write_face_zip(path: Path) -> Path:
    """Twelve small drawn faces, ``neutral_001.png`` ..., in one ZIP."""
    from PIL import Image, ImageDraw

    with zipfile.ZipFile(path, "w") as archive:
        for index, stem in enumerate(STEMS):
            face = Image.new("RGB", (160, 160), (230, 230 - 8 * index, 210))
            draw = ImageDraw.Draw(face)
            draw.ellipse((30, 20, 130, 140), fill=(225, 190, 160))
            draw.ellipse((55, 60, 70, 72), fill=(40, 40, 40))
            draw.ellipse((90, 60, 105, 72), fill=(40, 40, 40))
            draw.arc((60, 85 + index % 3 * 4, 100, 115), 0, 180, fill=(120, 40, 40), width=3)
            face_file = path.parent / f"{stem}.png"
            face.save(face_file)
            archive.write(face_file, arcname=face_file.name)
    return path


def write_survey_export(path: Path, participants: int = 6) -> Path:
    """A survey tool's wide export: one row per participant, three columns per stimulus stem."""
    rng = random.Random(10)
    header = ["ResponseId", "StartDate", "Duration (in seconds)"]
    header += [f"{stem}_{part}" for stem in STEMS for part in ("emotion", "valence", "arousal")]
    rows = []
    for person in range(1, participants + 1):
        cells = [f"R_{person:04d}", f"2026-03-0{person} 10:1{person}:00", str(300 + 17 * person)]
        for stem in STEMS:
            emotion = stem.split("_")[0] if rng.random() < 0.8 else rng.choice(EMOTIONS)
            cells += [emotion, str(rng.randint(1, 9)), str(rng.randint(1, 9))]
        rows.append(",".join(cells))
    path.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    return path


def write_long_batch(path: Path, raters: tuple[str, ...], typo: bool = False) -> Path:
    """A long batch on the stems, valence and arousal on 1-9; ``typo`` writes one valence of 12."""
    rng = random.Random(path.name)
    rows = [f"{rater},{stem},{rng.randint(1, 9)},{rng.randint(1, 9)}" for rater in raters for stem in STEMS]
    if typo:
        rater, stem, _, arousal = rows[4].split(",")
        rows[4] = f"{rater},{stem},12,{arousal}"
    path.write_text("participant,image,valence,arousal\n" + "\n".join(rows) + "\n")
    return path


def write_facereader_csv(path: Path) -> Path:
    """FaceReader-style output: one row per stimulus, category intensities, valence and arousal."""
    rng = random.Random(7)
    names = ("Neutral", "Happy", "Sad", "Angry", "Surprised", "Scared", "Disgusted")
    rows = []
    for stem in STEMS:
        scores = [rng.random() for _ in names]
        rows.append(",".join([stem, *(f"{s:.3f}" for s in scores),
                              f"{rng.uniform(-1, 1):.3f}", f"{rng.uniform(0, 1):.3f}"]))
    path.write_text("Stimulus," + ",".join(names) + ",Valence,Arousal\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_app(tmp_path_factory.mktemp("walk-data")) as app:
        yield app.url


def new_session(browser):
    """A coauthor of their own: a fresh context shares no Streamlit session or cookie."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    return page


def _shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def create_study(page, url: str) -> None:
    page.goto(url)
    page.get_by_text("Create a study or load the demo study to begin").wait_for()
    page.get_by_label("Study name").fill(STUDY)
    page.get_by_role("button", name="Create study").click()
    page.get_by_text("Upload human rating batches").wait_for()


def upload_faces(page, url: str, archive: Path) -> None:
    page.goto(f"{url}/Stimuli")
    page.get_by_role("tab", name="Upload images").click()
    page.locator("input[type=file]").first.set_input_files(str(archive))
    page.get_by_text("already face crops").click()
    page.get_by_role("button", name="Import images").click()
    page.get_by_text("Last import:").wait_for(timeout=180_000)


def open_wizard(page, url: str, ratings: Path, rows: int) -> None:
    page.goto(f"{url}/Ratings")
    page.get_by_role("tab", name="Upload ratings").click()
    page.locator("input[type=file]").first.set_input_files(str(ratings))
    page.get_by_text(f"{ratings.name}: {rows} data rows").wait_for()


def import_survey_export(page, url: str, survey: Path) -> None:
    open_wizard(page, url, survey, rows=6)
    choose(page, "valence scale", SAM)
    choose(page, "arousal scale", SAM)
    page.get_by_role("button", name=re.compile(r"^Match stimulus ids by .* for this study$")).click()
    page.get_by_text("Every row is valid.").wait_for()
    page.get_by_role("button", name=re.compile(r"^Import \d+ ratings$")).click()
    page.get_by_text(f"{survey.name}: batch #").wait_for()


def import_typo_batch(page, url: str, batch: Path) -> None:
    """The earlier batch's SAM 1-9 is suggested in spite of the 12, which is flagged as a typo."""
    open_wizard(page, url, batch, rows=len(STEMS) * 3)
    valence = page.get_by_role("combobox", name="valence scale")
    valence.wait_for()
    label = valence.get_attribute("aria-label") or ""
    hint = page.get_by_text(re.compile(r"suggested: SAM 1-9 \(1\.\.9\).*outside it \(12\)"))
    assert hint.count() > 0 or ("suggested: SAM 1-9" in label and "(12)" in label), label
    choose(page, "valence scale", SAM)
    choose(page, "arousal scale", SAM)
    page.get_by_text("Rows with problems").wait_for()
    partial = page.get_by_role("button", name=re.compile(r"^Import the \d+ valid ratings only"))
    assert partial.inner_text().endswith("1 rejected rows")
    partial.click()
    page.get_by_text(f"{batch.name}: batch #").wait_for()


def import_second_batch(page, url: str, batch: Path) -> None:
    open_wizard(page, url, batch, rows=len(STEMS) * 2)
    choose(page, "valence scale", SAM)
    choose(page, "arousal scale", SAM)
    page.get_by_text("Every row is valid.").wait_for()
    page.get_by_role("button", name=re.compile(r"^Import \d+ ratings$")).click()
    page.get_by_text(f"{batch.name}: batch #").wait_for()


def open_agreement(page, url: str) -> None:
    page.goto(f"{url}/Agreement")
    page.get_by_text(AGREEMENT_READY).first.wait_for(timeout=240_000)


def sees_new_batch(page, batch: Path) -> None:
    """Back on Agreement through the sidebar (same session): the batch is included or announced."""
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("link", name="Ratings", exact=True).click()
    page.get_by_role("tab", name="Batches").wait_for()
    sidebar.get_by_role("link", name="Agreement", exact=True).click()
    page.get_by_text(AGREEMENT_READY).first.wait_for(timeout=240_000)
    sidebar.get_by_text(batch.name).or_(sidebar.get_by_text("1 new batch since you opened this page")).first.wait_for()


def import_predictions(page, url: str, predictions: Path) -> None:
    page.goto(f"{url}/Models")
    page.get_by_role("tab", name="Import predictions").click()
    panel = page.get_by_role("tabpanel", name="Import predictions")
    panel.locator("input[type=file]").set_input_files(str(predictions))
    page.get_by_text(f"All {len(STEMS)} rows are valid.").wait_for()
    page.get_by_label("Model id").fill("facereader-9")
    page.get_by_label("Display name").click()  # leaves the id field so Streamlit takes its value
    page.get_by_role("button", name="Import predictions").click()
    page.get_by_text(f"facereader-9: {len(STEMS)} predictions stored").first.wait_for()


def test_first_hour_walk(browser, app_url: str, tmp_path: Path) -> None:
    owner = new_session(browser)
    try:
        walk(browser, owner, app_url, tmp_path)
    except Exception:
        _shot(owner, tmp_path, "walk-failed")
        print(f"screenshots: {tmp_path}")
        raise


def walk(browser, owner, app_url: str, tmp_path: Path) -> None:
    create_study(owner, app_url)
    upload_faces(owner, app_url, write_face_zip(tmp_path / "faces.zip"))
    _shot(owner, tmp_path, "walk-1-stimuli")

    import_survey_export(owner, app_url, write_survey_export(tmp_path / "survey_export.csv"))
    _shot(owner, tmp_path, "walk-2-survey-imported")
    import_typo_batch(owner, app_url, write_long_batch(tmp_path / "lab_batch.csv", ("L1", "L2", "L3"), typo=True))
    _shot(owner, tmp_path, "walk-3-typo-batch")

    open_agreement(owner, app_url)
    coauthor = new_session(browser)
    late_batch = write_long_batch(tmp_path / "coauthor_batch.csv", ("K1", "K2"))
    import_second_batch(coauthor, app_url, late_batch)
    coauthor.context.close()
    sees_new_batch(owner, late_batch)
    _shot(owner, tmp_path, "walk-4-agreement-sees-coauthor")

    import_predictions(owner, app_url, write_facereader_csv(tmp_path / "facereader_export.csv"))
    open_agreement(owner, app_url)
    owner.get_by_text("facereader-9").first.wait_for()
    with owner.expect_download() as download_info:
        owner.get_by_role("tabpanel", name="Human ceiling").get_by_role("button", name="CSV", exact=True).first.click()
    download = download_info.value
    _shot(owner, tmp_path, "walk-5-agreement-tables")
    assert re.search(r"batches-\d+-\d+-\d+\.csv$", download.suggested_filename), download.suggested_filename
    assert Path(download.path()).read_text().strip()
    owner.context.close()
