"""User text is shown as plain text: the escaping helper, and a scan of every page for sinks.

The scan walks the syntax tree of app.py, pages/*.py and ui/*.py and fails on any call to a
markdown-rendering Streamlit element whose text is built from something other than literals,
numbers and :func:`ui.text.plain` / :func:`ui.text.code`. It is strict on purpose: a value that
is only ever a constant is wrapped too (escaping a constant shows it unchanged).
"""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from ui.text import code, plain

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py")])

# Elements whose text argument renders as markdown (first positional argument and keywords).
MARKDOWN_ELEMENTS = {
    "markdown", "write", "caption", "info", "success", "warning", "error", "title", "header",
    "subheader", "toast", "expander", "popover", "status", "spinner", "metric", "page_link",
    "button", "download_button", "link_button", "form_submit_button", "checkbox", "toggle",
    "radio", "selectbox", "multiselect", "select_slider", "slider", "text_input", "text_area",
    "number_input", "date_input", "time_input", "file_uploader", "camera_input", "color_picker",
    "pills", "segmented_control", "feedback", "chat_input", "progress", "image", "tabs", "update",
}
MARKDOWN_KEYWORDS = {"body", "label", "text", "help", "caption"}
KEYWORDS_ONLY_ELEMENTS = {"progress", "page_link", "image", "update"}  # first argument is not text
# Their options render as markdown too: format_func must be plain or a constant mapping's get.
OPTION_ELEMENTS = {"radio", "pills", "segmented_control", "select_slider"}
# Renders every cell as markdown, renders raw HTML, or turns cells into links and images.
FORBIDDEN = {"table", "html", "LinkColumn", "ImageColumn", "unsafe_allow_html"}
ALL_POSITIONAL = {"write"}  # st.write renders every positional argument
MARKDOWN_FUNCTION_SUFFIX = "_markdown"  # a UI function returning markdown; its returns are scanned
SAFE_HELPERS = {"plain", "code"}
NUMBER_CALLS = {"len", "int", "float", "round", "abs"}
NUMBER_FORMATS = tuple("dfgeEGn%,")  # f-string specs whose output is digits


def _is_safe(node: ast.expr) -> bool:
    match node:
        case ast.Constant():
            return True
        case ast.JoinedStr(values=values):
            return all(_is_safe(part) for part in values)
        case ast.FormattedValue(value=value, format_spec=spec):
            return _is_safe(value) or (spec is not None and _numeric_spec(spec))
        case ast.BinOp(left=left, right=right):
            return _is_safe(left) and _is_safe(right)
        case ast.IfExp(body=body, orelse=orelse):
            return _is_safe(body) and _is_safe(orelse)
        case ast.Call(func=ast.Name(id=name)) if name in SAFE_HELPERS | NUMBER_CALLS:
            return True
        case ast.Call(func=ast.Name(id=name)) if name.endswith(MARKDOWN_FUNCTION_SUFFIX):
            return True
        case ast.Call(func=ast.Attribute(value=ast.Name(id=name), attr="get"), args=[_, *default]) \
                if name.isupper():  # a value from a constant mapping
            return all(_is_safe(item) for item in default)
        case ast.Subscript(value=ast.Name(id=name)) if name.isupper():
            return True
        case ast.Call(func=ast.Attribute(value=ast.Constant(value=str()), attr="join"), args=[items]):
            return _is_safe(items)
        case ast.GeneratorExp(elt=elt) | ast.ListComp(elt=elt):
            return _is_safe(elt)
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return all(_is_safe(item) for item in elts)
        case ast.Name(id=name) if name.isupper():  # a module constant
            return True
    return False


def _numeric_spec(spec: ast.JoinedStr) -> bool:
    text = "".join(part.value for part in spec.values if isinstance(part, ast.Constant))
    return text.endswith(NUMBER_FORMATS) or "%" in text


def _element(func: ast.expr) -> str | None:
    """``markdown`` for ``st.markdown``/``col.markdown``; also ``(st.success if ok else st.warning)``."""
    match func:
        case ast.Attribute(attr=name) if name in MARKDOWN_ELEMENTS:
            return name
        case ast.IfExp(body=body, orelse=orelse):
            return _element(body) or _element(orelse)
    return None


def _text_arguments(call: ast.Call, element: str) -> list[ast.expr]:
    positional = call.args if element in ALL_POSITIONAL else [] if element in KEYWORDS_ONLY_ELEMENTS else call.args[:1]
    return [*positional, *(k.value for k in call.keywords if k.arg in MARKDOWN_KEYWORDS)]


def _markdown_results(tree: ast.AST) -> list[ast.expr]:
    """What the ``*_markdown`` functions return or yield: it must be escaped like a sink."""
    functions = [node for node in ast.walk(tree)
                 if isinstance(node, ast.FunctionDef) and node.name.endswith(MARKDOWN_FUNCTION_SUFFIX)]
    return [node.value for function in functions for node in ast.walk(function)
            if isinstance(node, ast.Return | ast.Yield) and node.value is not None]


def unescaped_sinks(path: Path) -> list[str]:
    """``file:line: source`` for each markdown element given text not known to be safe."""
    relative = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    texts = list(_markdown_results(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (element := _element(node.func)):
            texts += _text_arguments(node, element)
    found = [f"{relative}:{text.lineno}: {ast.get_source_segment(source, text)}"
             for text in texts if not _is_safe(text)]
    found += [f"{relative}:{node.lineno}: options of {name} need format_func=plain"
              for node, name in _unformatted_options(tree)]
    return found + [f"{relative}:{node.lineno}: {name} is not allowed" for node, name in _forbidden(tree)]


def _unformatted_options(tree: ast.AST) -> list[tuple[ast.Call, str]]:
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr in OPTION_ELEMENTS]
    return [(call, call.func.attr) for call in calls if not any(
        keyword.arg == "format_func" and _safe_formatter(keyword.value) for keyword in call.keywords
    )]


def _safe_formatter(func: ast.expr) -> bool:
    match func:
        case ast.Name(id=name):
            return name in SAFE_HELPERS
        case ast.Attribute(value=ast.Name(id=name), attr="get"):
            return name.isupper()
    return False


def _forbidden(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    calls = [(node, node.func.attr) for node in ast.walk(tree)  # st.table(data), col.table(data)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args]
    keywords = [(node, node.arg) for node in ast.walk(tree) if isinstance(node, ast.keyword)]
    return [(node, name) for node, name in calls + keywords if name in FORBIDDEN]


def test_every_page_escapes_text_it_renders_as_markdown() -> None:
    found = [sink for path in UI_FILES for sink in unescaped_sinks(path)]
    assert not found, "wrap user text in ui.text.plain():\n" + "\n".join(found)


def test_the_scan_catches_unescaped_text(tmp_path: Path) -> None:
    page = tmp_path / "probe.py"
    page.write_text(
        'st.caption(f"by {batch.uploaded_by}")\nst.info(plain(name))\n'
        'col.metric(f"{n:,} rows", 3)\nst.error(str(error))\nst.button("Go", help=note)\n'
        'def list_markdown(x):\n    return f"- {x}"\nst.markdown(list_markdown(name))\n'
        'st.table(frame)\nst.markdown("<b>", unsafe_allow_html=True)\n'
        '(st.success if ok else st.warning)(report.summary())\nstatus.update(label=name)\n'
        'st.radio("Pick", names)\nst.radio("Pick", names, format_func=plain)\n',
        encoding="utf-8",
    )
    assert unescaped_sinks(page) == [
        'probe.py:7: f"- {x}"', 'probe.py:1: f"by {batch.uploaded_by}"', "probe.py:4: str(error)",
        "probe.py:5: note", "probe.py:11: report.summary()", "probe.py:12: name",
        "probe.py:13: options of radio need format_func=plain",
        "probe.py:9: table is not allowed", "probe.py:10: unsafe_allow_html is not allowed",
    ]


ATTACK = "![x](http://evil.example/a.png) [Session expired - log in again](http://evil.example)"


def test_plain_disarms_images_and_links() -> None:
    escaped = plain(ATTACK)
    assert "![" not in escaped and "](" not in escaped
    assert escaped.startswith(r"\!\[x\]\(http\:")


@pytest.mark.parametrize("text", ["**bold**", "# head", "<img src=x>", "&amp;", "$x$", ":red[x]",
                                  "1. item", "- item", "`tick`", "a_b_c", "back\\slash"])
def test_plain_escapes_every_markdown_character(text: str) -> None:
    escaped = plain(text)
    for char in set(text) & set(string.punctuation):
        assert "\\" + char in escaped


def test_plain_keeps_ordinary_text_and_line_breaks() -> None:
    assert plain("Ana Kim 행복") == "Ana Kim 행복"
    assert plain("a\r\nb\nc") == "a  \nb  \nc"


@pytest.mark.parametrize(("text", "span"), [
    ("img01.png", "`img01.png`"), ("a`b", "``a`b``"), ("`x`", "`` `x` ``"), ("", "` `"),
    ("two\nlines", "`two lines`"),
])
def test_code_spans_hold_any_text(text: str, span: str) -> None:
    assert code(text) == span
