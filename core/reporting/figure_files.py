"""Figure files (SVG and PNG through vl-convert), rendered in a child process.

vl-convert holds the GIL while it renders (a thread would not overlap anything), and rendering
was a third of a FER+-size report. :class:`FigureWriter` hands each chart's Vega-Lite spec to a
child process running this file, so the report goes on building the next charts and writing its
tables on the other core meanwhile. This file imports only the standard library and vl-convert:
the child starts in a fraction of a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

PNG_SCALE = 2  # print resolution for a single-column figure


def figure_paths(stem: Path) -> list[Path]:
    """The SVG and PNG files of the figure ``stem``."""
    return [stem.parent / f"{stem.name}.svg", stem.parent / f"{stem.name}.png"]


def write_figure(spec: dict, stem: Path, vl_version: str) -> list[Path]:
    """Render a Vega-Lite ``spec`` into ``<stem>.svg`` and ``<stem>.png``; returns both paths."""
    import vl_convert

    svg, png = figure_paths(stem)
    svg.parent.mkdir(parents=True, exist_ok=True)
    drawing = vl_convert.vegalite_to_svg(spec, vl_version=vl_version)
    svg.write_text(drawing, encoding="utf-8")
    png.write_bytes(vl_convert.svg_to_png(drawing, scale=PNG_SCALE))
    return [svg, png]


class FigureWriter:
    """Writes figures through a child process; leaving the ``with`` block waits for the last one
    and raises RuntimeError if any failed."""

    def __init__(self, vl_version: str) -> None:
        self._vl_version = vl_version
        self._specs = tempfile.TemporaryDirectory(prefix="faceagree-figures-")
        self._errors = tempfile.TemporaryFile()
        self._child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errors, text=True,
        )
        self._count = 0

    def write(self, spec: dict, stem: Path) -> list[Path]:
        """Queue ``spec`` for ``<stem>.svg`` and ``<stem>.png``; returns both paths (written by
        the time the ``with`` block ends)."""
        # The spec goes through a file: a large one would fill the pipe and block this process.
        spec_file = Path(self._specs.name) / f"{self._count}.json"
        self._count += 1
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        job = {"spec": str(spec_file), "stem": str(Path(stem).resolve()), "vl_version": self._vl_version}
        try:
            self._child.stdin.write(json.dumps(job) + "\n")
            self._child.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(self._failure(self._child.wait())) from None
        return figure_paths(Path(stem))

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is not None:
            self._child.kill()
        try:
            self._child.stdin.close()
        except BrokenPipeError:
            pass  # the child died; its exit status says so below
        status = self._child.wait()
        self._specs.cleanup()
        try:
            if status != 0 and error_type is None:
                raise RuntimeError(self._failure(status))
        finally:
            self._errors.close()

    def _failure(self, status: int) -> str:
        self._errors.seek(0)
        message = self._errors.read().decode(errors="replace").strip()
        return f"rendering the figures failed (exit status {status}):\n{message[-4000:]}"


def _render_jobs() -> int:
    """The child: one JSON job per stdin line."""
    for line in sys.stdin:
        job = json.loads(line)
        spec = json.loads(Path(job["spec"]).read_text(encoding="utf-8"))
        write_figure(spec, Path(job["stem"]), job["vl_version"])
    return 0


if __name__ == "__main__":
    sys.exit(_render_jobs())
