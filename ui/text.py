"""User text in Streamlit markdown, shown as the characters typed and never as markup.

``st.markdown``, ``st.caption``, ``st.info``/``warning``/``error``/``success``, ``st.write`` of a
string, headers, toasts and widget/expander/metric labels all render GitHub-flavoured markdown
plus Streamlit's extensions (``:red[...]``, ``:material/...:``, ``$math$``). A file name or an
"uploaded by" such as ``![x](http://evil.example/a.png) [Log in again](http://evil.example)``
would make every viewer's browser fetch an outside image and show a disguised link.

Every user-provided string (file names, uploaded_by, stimulus paths, model names and ids,
study names, rater ids, labels, notes, error messages that echo input) goes through
:func:`plain` (or :func:`code` inside an inline code span) before it reaches such an element.
"""

from __future__ import annotations

import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BACKTICKS = re.compile(r"`+")


def plain(text: object) -> str:
    """``text`` escaped so that markdown shows it literally.

    CommonMark lets a backslash escape any ASCII punctuation character, which disarms links,
    images, emphasis, headings, lists, HTML, entities, math and Streamlit's ``:directives:``.
    Line breaks are kept as hard breaks, so a line of the text cannot start a block.
    """
    escaped = _PUNCTUATION.sub(r"\\\1", str(text))
    return _LINE_BREAK.sub("  \n", escaped)


def code(text: object) -> str:
    """``text`` as an inline code span: shown verbatim, whatever characters it holds."""
    value = " ".join(_LINE_BREAK.split(str(text)))
    longest = max((len(run) for run in _BACKTICKS.findall(value)), default=0)
    fence = "`" * (longest + 1)
    padding = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{padding}{value}{padding}{fence}" if value else "` `"
