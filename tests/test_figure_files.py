"""Report figures rendered in a child process (issue 12): the same files as rendering in this
process, and a failure in the child surfaces as an error, not as missing figures."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import pytest

from core.reporting import exports
from core.reporting.figure_files import FigureWriter


def bar_chart(title: str) -> dict:
    frame = pd.DataFrame({"model": ["a", "b", "c"], "ccc": [0.1, 0.5, 0.9]})
    return exports.chart_spec(alt.Chart(frame).mark_bar().encode(x="model:N", y="ccc:Q").properties(title=title))


def test_child_writes_the_files_this_process_writes(tmp_path: Path) -> None:
    specs = {f"fig.{n}": bar_chart(f"figure {n}") for n in range(3)}
    with FigureWriter(exports._vegalite_version()) as writer:
        queued = [path for name, spec in specs.items() for path in writer.write(spec, tmp_path / "child" / name)]
    here = [path for name, spec in specs.items() for path in exports.save_chart(spec, tmp_path / "here" / name)]
    assert [p.name for p in queued] == [p.name for p in here] == [
        f"fig.{n}.{kind}" for n in range(3) for kind in ("svg", "png")]
    for child_file, own_file in zip(queued, here):
        assert child_file.read_bytes() == own_file.read_bytes()


def test_a_failure_in_the_child_is_raised(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="rendering the figures failed"):
        with FigureWriter("v0.0") as writer:  # no such Vega-Lite version
            writer.write(bar_chart("x"), tmp_path / "broken")
    assert not (tmp_path / "broken.png").exists()
