"""Study bundles: export -> import into a fresh database and data folder gives the same report;
a damaged, unsafe or newer bundle is refused before anything is written; clashes never overwrite."""

from __future__ import annotations

import json
import zipfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from core.access import Role
from core.__main__ import main
from core.agreement.report import build_report
from core.io.storage import blob_path
from core.workflows.bundle import BundleError, export_bundle, import_bundle
from core.workflows.catalog import describe_models
from core.workflows.demo import DEMO_NAME, load_demo
from db.analysis import load_predictions, load_ratings, load_stimuli
from db.engine import DATA_DIR_ENV, make_engine, make_sessionmaker
from db.models import RatingBatch, RegisteredModel, Stimulus, Study

ROW_IDS = ["stimulus_id", "batch_id"]  # row ids of the database, legitimately different


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """The demo study in database A and its bundle: (data folder, db url, bundle path)."""
    folder = tmp_path_factory.mktemp("source")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(folder))
        url = f"sqlite:///{folder / 'a.sqlite'}"
        factory = make_sessionmaker(make_engine(url))
        with factory.begin() as session:
            study_id = load_demo(session, actor=Role.OPERATOR)
        with factory() as session:
            export_bundle(session, study_id, folder / "demo.faceagree.zip")
    return folder, url, folder / "demo.faceagree.zip"


def report_of(url: str, folder: Path, name: str) -> dict[str, pd.DataFrame]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(folder))
        with make_sessionmaker(make_engine(url))() as session:
            study_id = session.scalar(select(Study.id).where(Study.name == name))
            frames = (load_ratings(session, study_id), load_predictions(session, study_id),
                      load_stimuli(session, study_id), describe_models(session))
    return build_report(*frames, n_boot=50, seed=3)


def without_ids(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in ROW_IDS if c in table.columns])


def test_round_trip_into_a_fresh_database_gives_identical_tables(exported, sessions, data_dir, db_url):
    source_folder, source_url, bundle = exported
    with sessions.begin() as session:
        summary = import_bundle(session, bundle, actor=Role.OPERATOR)
    assert (summary.study, summary.renamed_from, summary.n_batches, summary.n_restored_batches) == (
        DEMO_NAME, None, 2, 0)
    with sessions() as session:
        shas = session.scalars(select(Stimulus.sha256)).all()
        batches = session.scalars(select(RatingBatch).order_by(RatingBatch.id)).all()
    assert len(shas) == summary.n_stimuli == 25
    assert all(blob_path(sha).exists() for sha in shas)  # images now in the new data folder
    assert all(blob_path(batch.sha256).exists() for batch in batches)  # and the original files
    assert [b.uploaded_by for b in batches] == ["demo loader (synthetic)"] * 2

    before = report_of(source_url, source_folder, DEMO_NAME)
    after = report_of(db_url, data_dir, DEMO_NAME)
    assert before.keys() == after.keys()
    for name in before:
        pd.testing.assert_frame_equal(without_ids(before[name]), without_ids(after[name]), obj=name)
    assert not before["model_continuous"].empty and not before["loo"].empty


def test_a_name_clash_imports_under_a_dated_name_and_leaves_the_original(exported, sessions):
    bundle = exported[2]
    with sessions.begin() as session:
        first = import_bundle(session, bundle, today=date(2026, 12, 4), actor=Role.OPERATOR)
    with sessions.begin() as session:
        second = import_bundle(session, bundle, today=date(2026, 12, 4), actor=Role.OPERATOR)
    with sessions.begin() as session:
        third = import_bundle(session, bundle, today=date(2026, 12, 4), actor=Role.OPERATOR)
    assert first.study == DEMO_NAME
    assert second.study == f"{DEMO_NAME} (imported 2026-12-04)" and second.renamed_from == DEMO_NAME
    assert third.study == f"{DEMO_NAME} (imported 2026-12-04, 2)"
    with sessions() as session:
        per_study = dict(session.execute(
            select(Study.name, func.count(Stimulus.id)).join(Stimulus).group_by(Study.name)).all())
    assert set(per_study.values()) == {25}


def rewritten(bundle: Path, target: Path, change) -> Path:
    """A copy of ``bundle`` whose members went through ``change(name, data) -> data | None``."""
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            data = change(info.filename, source.read(info))
            if data is not None:
                out.writestr(info.filename, data)
    return target


def manifest_changed(**fields):
    def change(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        return json.dumps({**json.loads(data), **fields}).encode()
    return change


def refused(sessions, bundle: Path) -> str:
    """Import must fail with BundleError and leave the database without any study."""
    with pytest.raises(BundleError) as error, sessions.begin() as session:
        import_bundle(session, bundle, actor=Role.OPERATOR)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 0
        assert session.scalar(select(func.count()).select_from(RegisteredModel)) == 0
    return str(error.value)


def test_an_edited_member_is_refused(exported, sessions, tmp_path):
    def edit(name: str, data: bytes) -> bytes:
        return data.replace(b"demo loader", b"someone else") if name == "batches.json" else data

    message = refused(sessions, rewritten(exported[2], tmp_path / "edited.zip", edit))
    assert "'batches.json' does not match its sha256" in message


def test_a_bundle_from_a_newer_schema_is_refused(exported, sessions, tmp_path):
    bundle = rewritten(exported[2], tmp_path / "newer.zip", manifest_changed(schema_revision="9999"))
    message = refused(sessions, bundle)
    assert "newer FaceAgree" in message and "'9999'" in message and "Update the app" in message


def test_unsafe_paths_and_unlisted_members_are_refused(exported, sessions, tmp_path):
    def add(path: str):
        def change(name: str, data: bytes) -> bytes:
            return data
        target = rewritten(exported[2], tmp_path / f"{len(path)}.zip", change)
        with zipfile.ZipFile(target, "a") as archive:
            archive.writestr(path, b"x")
        return target

    assert "path traversal" in refused(sessions, add("../outside.txt"))
    assert "unlisted: ['extra.txt']" in refused(sessions, add("extra.txt"))
    assert "not a readable ZIP" in refused(sessions, _not_zip(tmp_path))


def _not_zip(tmp_path: Path) -> Path:
    path = tmp_path / "plain.zip"
    path.write_bytes(b"not a zip at all")
    return path


def test_a_model_registered_differently_here_refuses_the_whole_bundle(exported, sessions):
    with sessions.begin() as session:
        session.add(RegisteredModel(id="demo-model-a", source="imported", card={"name": "other tool"}))
    with pytest.raises(BundleError, match="different imported model named 'demo-model-a'"):
        with sessions.begin() as session:
            import_bundle(session, exported[2], actor=Role.OPERATOR)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 0


def test_cli_exports_without_images_and_imports(exported, db_url, data_dir, tmp_path, capsys):
    source_folder, source_url, _ = exported
    out = tmp_path / "light.faceagree.zip"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(source_folder))
        assert main(["--db", source_url, "export-bundle", "--study", DEMO_NAME, "--out", str(out),
                     "--no-images"]) == 0
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert not [n for n in names if n.startswith("images/")] and manifest["include_images"] is False
    assert set(manifest["members"]) == set(names) - {"manifest.json"}
    assert manifest["model_checkpoints"] == {f"demo-model-{x}": ["synthetic"] for x in "abc"}
    assert main(["--db", db_url, "import-bundle", str(out)]) == 0
    assert f"imported as study '{DEMO_NAME}'" in capsys.readouterr().out
    with make_sessionmaker(make_engine(db_url))() as session:
        thumbnails = session.scalars(select(Stimulus.thumbnail)).all()
        shas = session.scalars(select(Stimulus.sha256)).all()
    assert len(set(thumbnails)) == 1  # one grey placeholder, no face
    assert not any(blob_path(sha).exists() for sha in shas)
    assert main(["--db", db_url, "import-bundle", str(tmp_path / "absent.zip")]) == 2
