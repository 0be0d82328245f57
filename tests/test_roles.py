"""Roles are enforced in the write functions themselves: every role x write path, allowed or refused.

Each case performs one real write on a real SQLite file. A refused role must get
:class:`PermissionDenied` naming role and action, with nothing stored; an allowed role gets past
the guard (cheap writes are checked for their effect, costly ones only for not being refused).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.access import ACTIONS, Action, PermissionDenied, Role, allowed, may_see_faces, require
from core.access.logins import LoginConfig, read_config
from core.access.passwords import BadHash, hash_password, verify_password
from core.io.images import blurred_thumbnail, thumbnail_jpeg
from core.workflows import bundle, catalog, demo, face_stage, inference, predictions_import
from core.workflows import jobs as job_workflow
from core.workflows import stimuli as stimulus_workflow
from db import faces, predictions, queries, ratings
from db import jobs as job_db
from db import stimuli as stimulus_db
from db.models import FaceDetection, Job, RatingBatch, Study
from db.predictions import CacheKey, PredictionRow
from tests.test_ratings_db import GOOD, prepared_from, store, study  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
TRIED: Counter[tuple[str, str]] = Counter()


def batch(sessions, study_id: int) -> int:
    return store(sessions, study_id, GOOD)


def prepared_batch(sessions, study_id: int):
    return prepared_from(sessions, study_id, GOOD)


# name -> (action, write(sessions, study_id, actor) -> check of the effect or None)
WritePath = Callable[[sessionmaker[Session], int, Role], Callable[[Session], bool] | None]


def _in_session(sessions, write):
    with sessions.begin() as session:
        return write(session)


def _create_study(sessions, study_id, actor):
    _in_session(sessions, lambda s: stimulus_db.create_study(s, f"new by {actor.value}", actor=actor))
    return lambda s: s.scalar(select(Study).where(Study.name == f"new by {actor.value}")) is not None


def _get_or_create_study(sessions, study_id, actor):
    _in_session(sessions, lambda s: queries.get_or_create_study(s, f"made by {actor.value}", actor=actor))
    return lambda s: s.scalar(select(Study).where(Study.name == f"made by {actor.value}")) is not None


def _set_key_mode(sessions, study_id, actor):
    _in_session(sessions, lambda s: stimulus_db.set_key_mode(s, study_id, "stem", False, actor=actor))
    return lambda s: s.get(Study, study_id).stimulus_key == "stem"


def _reviewers_see_faces(sessions, study_id, actor):
    _in_session(sessions, lambda s: stimulus_db.set_reviewers_see_faces(s, study_id, True, actor=actor))
    return lambda s: s.get(Study, study_id).reviewers_see_faces


def _first_stimulus(session: Session, study_id: int) -> int:
    return min(row[0] for row in stimulus_db.stimulus_rows(session, study_id))


def _upsert_attributes(sessions, study_id, actor):
    def write(session):
        return stimulus_db.upsert_attributes(session, {_first_stimulus(session, study_id): {"set": "A"}}, actor=actor)
    _in_session(sessions, write)
    return lambda s: stimulus_db.attribute_keys(s, study_id) == ["set"]


def _set_intended(sessions, study_id, actor):
    def write(session):
        stimulus_db.set_intended(session, _first_stimulus(session, study_id), "happiness", actor=actor)
    _in_session(sessions, write)
    return lambda s: stimulus_db.intended_counts(s, study_id).get("happiness") == 1


def _import_batch(sessions, study_id, actor):
    prepared, data = prepared_batch(sessions, study_id)
    _in_session(sessions, lambda s: ratings.import_batch(s, study_id, prepared, file_name="r.csv", data=data, actor=actor))
    return lambda s: s.scalar(select(func.count()).select_from(RatingBatch)) == 1


def _import_batch_in_chunks(sessions, study_id, actor):
    prepared, data = prepared_batch(sessions, study_id)
    ratings.import_batch_in_chunks(sessions, study_id, prepared, file_name="r.csv", data=data, actor=actor)
    return lambda s: s.scalar(select(func.count()).select_from(RatingBatch)) == 1


def _enqueue_job(sessions, study_id, actor):
    _in_session(sessions, lambda s: job_db.enqueue(s, "face_stage", study_id, {}, actor=actor))
    return lambda s: s.scalar(select(func.count()).select_from(Job)) == 1


def _enqueue_job_workflow(sessions, study_id, actor):
    job_workflow.enqueue(sessions, "face_stage", study_id, {}, actor=actor)
    return lambda s: s.scalar(select(func.count()).select_from(Job)) == 1


def queued_job(sessions, study_id: int) -> int:
    return _in_session(sessions, lambda s: job_db.enqueue(s, "face_stage", study_id, {}, actor=Role.OPERATOR))


def _request_cancel(sessions, study_id, actor, job_id):
    _in_session(sessions, lambda s: job_db.request_cancel(s, job_id, actor=actor))
    return lambda s: s.get(Job, job_id).state == "cancelled"


def _set_excluded(sessions, study_id, actor, batch_id):
    _in_session(sessions, lambda s: ratings.set_excluded(s, batch_id, True, actor=actor))
    return lambda s: s.get(RatingBatch, batch_id).excluded


def _delete_batch(sessions, study_id, actor, batch_id):
    _in_session(sessions, lambda s: ratings.delete_batch(s, batch_id, actor=actor))
    return lambda s: s.get(RatingBatch, batch_id).deleted_at is not None


def deleted_batch(sessions, study_id: int) -> int:
    batch_id = batch(sessions, study_id)
    _in_session(sessions, lambda s: ratings.delete_batch(s, batch_id, actor=Role.OPERATOR))
    return batch_id


def _undo_delete(sessions, study_id, actor, batch_id):
    _in_session(sessions, lambda s: ratings.undo_delete(s, batch_id, actor=actor))
    return lambda s: s.get(RatingBatch, batch_id).deleted_at is None


def _purge_deleted(sessions, study_id, actor, batch_id):
    _in_session(sessions, lambda s: ratings.purge_deleted(s, older_than=-ratings.UNDO_WINDOW, actor=actor))
    return lambda s: s.get(RatingBatch, batch_id) is None


KEY = CacheKey("some-model", "w" * 64, "pre-1")


def _save_predictions(sessions, study_id, actor, scope=None):
    rows = [PredictionRow("1" * 64, "none", label="happy")]
    _in_session(sessions, lambda s: predictions.save_predictions(s, KEY, rows, scope, actor=actor))
    return lambda s: predictions.cached_statuses(s, KEY, {"1" * 64: "none"}) != {}


def failed_prediction(sessions, study_id: int) -> None:
    rows = [PredictionRow("2" * 64, "none", status="error", error="broken")]
    _in_session(sessions, lambda s: predictions.save_predictions(s, KEY, rows, actor=Role.OPERATOR))


def _delete_failed(sessions, study_id, actor, _):
    removed = _in_session(sessions, lambda s: predictions.delete_failed(s, KEY, ["2" * 64], actor=actor))
    return lambda s: removed == 1


def _upsert_registered_model(sessions, study_id, actor):
    _in_session(sessions, lambda s: predictions.upsert_registered_model(s, "tool", source="imported", card={}, actor=actor))
    return lambda s: predictions.registered_model(s, "tool") is not None


def _save_detection(sessions, study_id, actor):
    _in_session(sessions, lambda s: faces.save_detection(
        s, sha256="3" * 64, detector="haar-1", faces=[], chosen=None, choice_rule="largest", status="none",
        actor=actor))
    return lambda s: s.scalar(select(func.count()).select_from(FaceDetection)) == 1


def detection(sessions, study_id: int) -> int:
    def write(session: Session) -> int:
        row = faces.save_detection(session, sha256="4" * 64, detector="haar-1", faces=[], chosen=None,
                                   choice_rule="largest", status="none", actor=Role.OPERATOR)
        session.flush()
        return row.id
    return _in_session(sessions, write)


def _set_choice(sessions, study_id, actor, row_id):
    _in_session(sessions, lambda s: faces.set_choice(s, row_id, None, "central", actor=actor))
    return lambda s: s.get(FaceDetection, row_id).choice_rule == "central"


def _import_files(sessions, study_id, actor):
    from PIL import Image
    image = thumbnail_jpeg(Image.new("RGB", (40, 40), "orange"))
    _in_session(sessions, lambda s: stimulus_workflow.import_files(s, study_id, [("new.jpg", image)], actor=actor))
    return lambda s: any(path == "new.jpg" for _, path, _ in stimulus_db.stimulus_rows(s, study_id))


def _import_metadata(sessions, study_id, actor):
    data = b"stimulus,set\nimg01.png,B\n"
    _in_session(sessions, lambda s: stimulus_workflow.import_metadata(s, study_id, "m.csv", data, actor=actor))
    return lambda s: stimulus_db.attribute_keys(s, study_id) == ["set"]


def _import_predictions(sessions, study_id, actor):
    data = b"stimulus,label\nimg01.png,happy\n"
    predictions_import.import_predictions(sessions, study_id, "tool-x", "p.csv", data, actor=actor)
    return lambda s: predictions.registered_model(s, "tool-x") is not None


def _not_refused(write: Callable[[], object]) -> None:
    """For costly paths: whatever the call does next, the role guard did not stop it."""
    try:
        write()
    except PermissionDenied:
        raise
    except Exception:  # noqa: BLE001  (a missing model or a bad file is the call's own outcome)
        pass


def _run_model(sessions, study_id, actor):
    _not_refused(lambda: inference.run_model(sessions, study_id, "no-such-model", actor=actor))


def _run_spec(sessions, study_id, actor):
    _not_refused(lambda: inference.run_spec(sessions, study_id, catalog.get_spec(catalog.all_specs()[0].id), "w",
                                             batch_size=0, actor=actor))


def _run_models(sessions, study_id, actor):
    _not_refused(lambda: inference.run_models(sessions, study_id, [], actor=actor))


def _check_half_precision(sessions, study_id, actor):
    _not_refused(lambda: inference.check_half_precision(sessions, study_id, "no-such-model", device="cpu", actor=actor))


def _ensure_faces(sessions, study_id, actor):
    _not_refused(lambda: face_stage.ensure_faces(sessions, [], actor=actor))


def _register_card(sessions, study_id, actor):
    _not_refused(lambda: _in_session(sessions, lambda s: catalog.register_card(s, "not a card", b"", actor=actor)))


def _load_demo(sessions, study_id, actor):
    _in_session(sessions, lambda s: demo.load_demo(s, actor=actor))
    return lambda s: s.scalar(select(Study).where(Study.is_demo)) is not None


def _import_bundle(sessions, study_id, actor):
    _not_refused(lambda: _in_session(sessions, lambda s: bundle.import_bundle(s, b"not a zip", actor=actor)))


WRITE_PATHS: dict[str, tuple[Action, Callable]] = {
    "db.stimuli.create_study": (Action.CREATE_STUDY, _create_study),
    "db.queries.get_or_create_study": (Action.CREATE_STUDY, _get_or_create_study),
    "db.stimuli.set_key_mode": (Action.CHANGE_STUDY_SETTINGS, _set_key_mode),
    "db.stimuli.set_reviewers_see_faces": (Action.CHANGE_STUDY_SETTINGS, _reviewers_see_faces),
    "db.stimuli.upsert_attributes": (Action.UPLOAD_STIMULI, _upsert_attributes),
    "db.stimuli.set_intended": (Action.UPLOAD_STIMULI, _set_intended),
    "db.ratings.import_batch": (Action.UPLOAD_RATINGS, _import_batch),
    "db.ratings.import_batch_in_chunks": (Action.UPLOAD_RATINGS, _import_batch_in_chunks),
    "db.jobs.enqueue": (Action.RUN_MODELS, _enqueue_job),
    "db.jobs.request_cancel": (Action.RUN_MODELS, _request_cancel),
    "core.workflows.jobs.enqueue": (Action.RUN_MODELS, _enqueue_job_workflow),
    "db.ratings.set_excluded": (Action.EXCLUDE_BATCH, _set_excluded),
    "db.ratings.delete_batch": (Action.DELETE_BATCH, _delete_batch),
    "db.ratings.undo_delete": (Action.DELETE_BATCH, _undo_delete),
    "db.ratings.purge_deleted": (Action.PURGE_BATCHES, _purge_deleted),
    "db.predictions.save_predictions": (Action.RUN_MODELS, _save_predictions),
    "db.predictions.save_predictions(study)": (
        Action.UPLOAD_PREDICTIONS, lambda sessions, study_id, actor: _save_predictions(sessions, study_id, actor, study_id)),
    "db.predictions.delete_failed": (Action.RUN_MODELS, _delete_failed),
    "db.predictions.upsert_registered_model": (Action.REGISTER_MODEL, _upsert_registered_model),
    "db.faces.save_detection": (Action.RUN_MODELS, _save_detection),
    "db.faces.set_choice": (Action.RUN_MODELS, _set_choice),
    "core.workflows.stimuli.import_files": (Action.UPLOAD_STIMULI, _import_files),
    "core.workflows.stimuli.import_metadata": (Action.UPLOAD_STIMULI, _import_metadata),
    "core.workflows.predictions_import.import_predictions": (Action.UPLOAD_PREDICTIONS, _import_predictions),
    "core.workflows.inference.run_model": (Action.RUN_MODELS, _run_model),
    "core.workflows.inference.run_spec": (Action.RUN_MODELS, _run_spec),
    "core.workflows.inference.run_models": (Action.RUN_MODELS, _run_models),
    "core.workflows.inference.check_half_precision": (Action.RUN_MODELS, _check_half_precision),
    "core.workflows.face_stage.ensure_faces": (Action.RUN_MODELS, _ensure_faces),
    "core.workflows.catalog.register_card": (Action.REGISTER_MODEL, _register_card),
    "core.workflows.demo.load_demo": (Action.LOAD_DEMO, _load_demo),
    "core.workflows.bundle.import_bundle": (Action.IMPORT_BUNDLE, _import_bundle),
}


# What a write path needs stored first (by the operator), passed to it as its last argument.
SETUPS: dict[str, Callable[[sessionmaker[Session], int], object]] = {
    "db.ratings.set_excluded": batch,
    "db.ratings.delete_batch": batch,
    "db.ratings.undo_delete": deleted_batch,
    "db.ratings.purge_deleted": deleted_batch,
    "db.predictions.delete_failed": failed_prediction,
    "db.faces.set_choice": detection,
    "db.jobs.request_cancel": queued_job,
}


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize("path", list(WRITE_PATHS))
def test_each_role_may_do_exactly_its_writes(sessions, study, path: str, role: Role) -> None:  # noqa: F811
    action, write = WRITE_PATHS[path]
    if path in SETUPS:
        write = _with_setup(write, SETUPS[path](sessions, study))
    if allowed(role, action):
        check = write(sessions, study, role)
        if check is not None:
            with sessions() as session:
                assert check(session)
        TRIED[(role.value, "allowed")] += 1
        return
    with sessions() as session:
        before = _table_counts(session)
    with pytest.raises(PermissionDenied, match=f"The {role.value} role may not {action.value}"):
        write(sessions, study, role)
    with sessions() as session:
        assert _table_counts(session) == before
    TRIED[(role.value, "refused")] += 1


def _with_setup(write: Callable, prepared: object) -> Callable:
    return lambda sessions, study_id, actor: write(sessions, study_id, actor, prepared)


def _table_counts(session: Session) -> dict[str, int]:
    from db.models import Base
    return {table.name: session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables}


def test_the_policy_table() -> None:
    assert all(not allowed(Role.REVIEWER, action) for action in Action)
    assert all(allowed(Role.OPERATOR, action) and allowed(Role.OWNER, action) for action in Action)
    coauthor = {action for action in Action if allowed(Role.COAUTHOR, action)}
    assert coauthor == {Action.UPLOAD_STIMULI, Action.UPLOAD_RATINGS, Action.UPLOAD_PREDICTIONS,
                        Action.RUN_MODELS, Action.REGISTER_MODEL, Action.EXCLUDE_BATCH}
    assert set(ACTIONS) == set(Action)
    with pytest.raises(PermissionDenied, match="The admin role may not run models"):
        require("admin", Action.RUN_MODELS)  # type: ignore[arg-type]


def _guarded_functions() -> set[str]:
    """Every public function in db/ and core/workflows/ that takes ``actor``."""
    found = set()
    for path in [*(ROOT / "db").glob("*.py"), *(ROOT / "core" / "workflows").glob("*.py")]:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                if "actor" in {a.arg for a in node.args.kwonlyargs}:
                    found.add(f"{module}.{node.name}")
    return found


WRITE_MARKERS = ("session.add(", "insert(", "delete(", "= update(", "(update(", "session.delete(", "store_bytes(")


def test_every_write_function_takes_the_actor_and_is_in_the_matrix() -> None:
    tested = {name.split("(")[0] for name in WRITE_PATHS}
    assert _guarded_functions() == tested
    unguarded = []
    for path in [*(ROOT / "db").glob("*.py"), *(ROOT / "core" / "workflows").glob("*.py")]:
        if path.name in ("migrate.py", "engine.py", "bulk.py"):  # bulk: a helper of guarded imports
            continue
        source = path.read_text()
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                body = ast.get_source_segment(source, node) or ""
                takes_actor = "actor" in {a.arg for a in node.args.kwonlyargs}
                if any(marker in body for marker in WRITE_MARKERS) and not takes_actor:
                    unguarded.append(f"{path.name}:{node.name}")
    assert unguarded == []


def test_tried_counts_cover_every_role() -> None:
    """Runs last in this file: the role x write path counts for the report (printed with -s)."""
    if not TRIED:
        pytest.skip("run with the matrix")
    print("\nrole x write path:", dict(sorted(TRIED.items())))
    assert TRIED[("reviewer", "refused")] == len(WRITE_PATHS)
    assert TRIED[("reviewer", "allowed")] == 0


# --- passwords and login configuration ------------------------------------------------------

def test_a_password_hash_verifies_only_its_password() -> None:
    stored = hash_password("얼굴감정-2026")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("얼굴감정-2026", stored)
    assert not verify_password("얼굴감정", stored)
    assert hash_password("same") != hash_password("same")  # salted


@pytest.mark.parametrize("stored", ["plain-text", "scrypt$1$8$1$YQ==$YQ==", "scrypt$16384$8$1$!!$??", "md5$x"])
def test_a_damaged_hash_is_a_config_problem_not_a_crash(stored: str) -> None:
    with pytest.raises(BadHash):
        verify_password("x", stored)
    config = read_config({"passwords": {"coauthor": stored}})
    assert config.problems and config.is_open  # the broken entry is reported, and opens nothing


def test_roles_from_passwords_emails_and_scopes() -> None:
    secrets = {
        "passwords": {"owner": hash_password("o"), "coauthor": hash_password("c"), "reviewer": hash_password("r")},
        "study_scope": {"reviewer": "Pilot"},
        "auth": {"client_id": "x"},
        "roles": {"owners": ["PI@example.org"], "reviewers": ["guest@example.org", "pi@example.org"]},
    }
    config = read_config(secrets)
    assert not config.is_open and config.oidc and config.problems == ()
    assert [config.role_for_password(p) for p in ("o", "c", "r", "x")] == [
        Role.OWNER, Role.COAUTHOR, Role.REVIEWER, None]
    assert config.role_for_email("guest@example.org") is Role.REVIEWER
    assert config.role_for_email(" pi@example.org") is Role.REVIEWER  # on two lists: the lesser role
    assert config.role_for_email("stranger@example.org") is None
    assert config.role_for_email(None) is None
    assert config.scope_of(Role.REVIEWER) == "Pilot" and config.scope_of(Role.COAUTHOR) is None


def test_the_legacy_password_is_a_coauthor_and_nothing_configured_is_open() -> None:
    assert read_config({"password": "old"}).role_for_password("old") is Role.COAUTHOR
    assert LoginConfig().is_open and read_config({"db_url": "sqlite://"}).is_open
    assert read_config({"passwords": {"admin": hash_password("x")}}).problems


def test_reviewers_see_blurred_thumbnails_unless_the_study_allows() -> None:
    from PIL import Image, ImageDraw
    image = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(image).ellipse((40, 40, 160, 160), fill="black")
    original = thumbnail_jpeg(image)
    blurred = blurred_thumbnail(original)
    assert blurred != original and len(blurred) < len(original)
    import io
    with Image.open(io.BytesIO(blurred)) as shown:
        assert shown.size == (96, 96)
    assert not may_see_faces(Role.REVIEWER, False) and may_see_faces(Role.REVIEWER, True)
    assert may_see_faces(Role.COAUTHOR, False)


def test_the_cli_hashes_a_password_from_stdin() -> None:
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "core", "hash-password", "--stdin"], input="pw\n",
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0
    assert verify_password("pw", done.stdout.strip())


def test_the_cli_sets_the_study_setting_as_operator(sessions, study, db_url) -> None:  # noqa: F811
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "core", "--db", db_url, "study-settings", "--study", "pilot",
                           "--reviewers-see-faces", "yes"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    with sessions() as session:
        assert session.get(Study, study).reviewers_see_faces


