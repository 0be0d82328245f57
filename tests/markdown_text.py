"""What a reader sees of markdown that ``ui.text.plain`` escaped: for assertions on page text."""

from __future__ import annotations

import re
import string

_ESCAPE = re.compile(r"\\([" + re.escape(string.punctuation) + "])")


def shown(markdown: str) -> str:
    """``markdown`` without its backslash escapes and hard-break spaces."""
    return _ESCAPE.sub(r"\1", markdown).replace("  \n", "\n")
