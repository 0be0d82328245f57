"""How rating and metadata files name a stimulus: file name, stem or relative path.

Kept apart from core.workflows.stimuli so db.stimuli can build key indexes without an import cycle;
core.workflows.stimuli re-exports these names.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.io.images import IMAGE_SUFFIXES

KEY_MODES: dict[str, str] = {
    "name": "file name (face01.jpg)",
    "stem": "file name without extension (face01)",
    "path": "relative path (set1/face01.jpg)",
}


def normalise_path(path: str) -> str:
    """POSIX separators without empty or ``.`` segments (``./a//b.png`` -> ``a/b.png``), NFC
    (macOS ZIPs store Korean names as NFD)."""
    text = unicodedata.normalize("NFC", str(path)).strip().replace("\\", "/")
    return "/".join(part for part in text.split("/") if part not in ("", "."))


def stimulus_key(path: str, mode: str, case_insensitive: bool) -> str:
    """The id a rating file uses for the stimulus stored at ``path`` under key ``mode``."""
    if mode not in KEY_MODES:
        raise ValueError(f"unknown stimulus key mode {mode!r}; use one of {sorted(KEY_MODES)}")
    clean = normalise_path(path)
    name = PurePosixPath(clean).name
    key = {"name": name, "stem": PurePosixPath(name).stem, "path": clean}[mode]
    return key.casefold() if case_insensitive else key


def lookup_key(raw_id: object, mode: str, case_insensitive: bool) -> str:
    """Normalise an id as written in a rating/metadata file for lookup in a key index.

    Unlike :func:`stimulus_key`, "stem" mode strips only an image suffix, so an id such as
    ``"anger.v2"`` (a stem containing a dot) still matches ``anger.v2.jpg``; an id written as a
    full file name (``face01.jpg``) also matches in "stem" mode.
    """
    clean = normalise_path(str(raw_id))
    if mode in ("name", "stem"):
        clean = PurePosixPath(clean).name
    if mode == "stem" and clean.lower().endswith(IMAGE_SUFFIXES):
        clean = PurePosixPath(clean).stem
    return clean.casefold() if case_insensitive else clean


@dataclass(frozen=True)
class KeySuggestion:
    """Another way of naming stimuli under which every id of a rating file matches one stimulus."""

    mode: str
    case_insensitive: bool
    matches: dict[str, str]  # each id that is unknown now -> the stored path it would name

    def describe(self) -> str:
        how = KEY_MODES[self.mode].split(" (")[0]
        return how + (", ignoring upper/lower case" if self.case_insensitive else "")


def suggest_key_mode(
    paths: Iterable[str], ids: Iterable[str], unknown: Iterable[str], mode: str, case_insensitive: bool
) -> KeySuggestion | None:
    """The closest key mode (same case rule first) under which each of ``ids`` names exactly one of
    ``paths`` and no two paths share a key; None when there is none or nothing is ``unknown``.

    Survey tools write stems (``neutral_001``) where a study stores file names (``neutral_001.jpg``).
    """
    paths, ids, unknown = list(paths), set(map(str, ids)), set(map(str, unknown))
    if not unknown:
        return None
    for folded in (case_insensitive, not case_insensitive):
        for candidate in KEY_MODES:
            if (candidate, folded) == (mode, case_insensitive):
                continue
            named = _paths_by_key(paths, candidate, folded)
            if named is None:
                continue
            found = {raw: named.get(lookup_key(raw, candidate, folded)) for raw in ids | unknown}
            if all(found.values()):
                return KeySuggestion(candidate, folded, {raw: found[raw] for raw in sorted(unknown)})
    return None


def _paths_by_key(paths: list[str], mode: str, case_insensitive: bool) -> dict[str, str] | None:
    """Key -> path under ``mode``; None when two paths share a key (the mode would be ambiguous)."""
    named: dict[str, str] = {}
    for path in paths:
        key = lookup_key(stimulus_key(path, mode, case_insensitive), mode, case_insensitive)
        if key in named:
            return None
        named[key] = path
    return named
