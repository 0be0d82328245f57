"""Who may do what: roles, write actions, and the check every write function makes first.

The policy is data (:data:`ACTIONS`), so the tests can walk every role x action pair and the
pages can ask the same table which widgets to show. Hiding a button is never the only guard:
``db`` and ``core.workflows`` write functions take the acting role and call :func:`require`.
"""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    OWNER = "owner"  # everything, incl. study settings, deleting and purging rating batches
    COAUTHOR = "coauthor"  # uploads, model runs, excluding batches; nothing irreversible
    REVIEWER = "reviewer"  # read-only: tables, figures, downloads
    OPERATOR = "operator"  # the command line on the server: whoever has a shell may do everything


class Action(str, Enum):
    CREATE_STUDY = "create a study"
    CHANGE_STUDY_SETTINGS = "change study settings"
    IMPORT_BUNDLE = "import a study bundle"
    LOAD_DEMO = "load the demo study"
    UPLOAD_STIMULI = "upload stimuli or metadata"
    UPLOAD_RATINGS = "upload ratings"
    UPLOAD_PREDICTIONS = "upload predictions"
    RUN_MODELS = "run models"
    REGISTER_MODEL = "register a model"
    EXCLUDE_BATCH = "exclude or include a rating batch"
    DELETE_BATCH = "delete or restore a rating batch"
    PURGE_BATCHES = "purge deleted rating batches"


_EVERYONE_WHO_WRITES = frozenset({Role.OWNER, Role.OPERATOR})
_WITH_COAUTHORS = _EVERYONE_WHO_WRITES | {Role.COAUTHOR}

ACTIONS: dict[Action, frozenset[Role]] = {
    Action.CREATE_STUDY: _EVERYONE_WHO_WRITES,
    Action.CHANGE_STUDY_SETTINGS: _EVERYONE_WHO_WRITES,
    Action.IMPORT_BUNDLE: _EVERYONE_WHO_WRITES,
    Action.LOAD_DEMO: _EVERYONE_WHO_WRITES,
    Action.UPLOAD_STIMULI: _WITH_COAUTHORS,
    Action.UPLOAD_RATINGS: _WITH_COAUTHORS,
    Action.UPLOAD_PREDICTIONS: _WITH_COAUTHORS,
    Action.RUN_MODELS: _WITH_COAUTHORS,
    Action.REGISTER_MODEL: _WITH_COAUTHORS,
    Action.EXCLUDE_BATCH: _WITH_COAUTHORS,
    Action.DELETE_BATCH: _EVERYONE_WHO_WRITES,
    Action.PURGE_BATCHES: _EVERYONE_WHO_WRITES,
}


class PermissionDenied(PermissionError):
    """A role tried a write it may not do; the message names both."""

    def __init__(self, role: Role | str, action: Action) -> None:
        super().__init__(f"The {getattr(role, 'value', role)} role may not {action.value}.")
        self.role = role
        self.action = action


def allowed(role: Role, action: Action) -> bool:
    """Whether ``role`` may do ``action``; an unknown role may do nothing."""
    try:
        return Role(role) in ACTIONS[action]
    except ValueError:
        return False


def require(role: Role, action: Action) -> None:
    """Raise :class:`PermissionDenied` unless ``role`` may do ``action``."""
    if not allowed(role, action):
        raise PermissionDenied(role, action)


def may_see_faces(role: Role, study_allows: bool) -> bool:
    """Original face images for everyone but reviewers, unless the study's owner allows them."""
    return Role(role) is not Role.REVIEWER or study_allows
