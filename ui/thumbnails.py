"""Stimulus thumbnails as pages show them, with a placeholder where none can be shown.

A study can hold stimuli without a readable thumbnail (a database written by a benchmark or
another tool that never stored images, a damaged row); the gallery still lists them, each as
a grey square, instead of failing on the first one.
"""

from __future__ import annotations

import functools
import io

from PIL import Image

from core.io.images import blurred_thumbnail, thumbnail_jpeg

PLACEHOLDER_SIDE = 96
PLACEHOLDER_GREY = (225, 225, 225)


@functools.cache
def placeholder() -> bytes:
    """A light grey square JPEG standing in for a missing thumbnail."""
    return thumbnail_jpeg(Image.new("RGB", (PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), PLACEHOLDER_GREY))


def shown_thumbnail(thumbnail: bytes | None, faces_visible: bool) -> bytes | None:
    """The thumbnail to show (blurred unless ``faces_visible``), or ``None`` when it is empty
    or unreadable; an unreadable one is never passed on unblurred."""
    if not thumbnail:
        return None
    try:
        if not faces_visible:
            return blurred_thumbnail(thumbnail)
        with Image.open(io.BytesIO(thumbnail)):  # reads the header only: is it an image at all?
            return thumbnail
    except OSError:  # PIL's UnidentifiedImageError and truncated files
        return None
