"""Decode stimulus images safely: format whitelist, pixel limit, EXIF orientation, thumbnails.

Every image enters the app through :func:`open_image`, so the model and face stages see the same
pixels the gallery shows (EXIF orientation applied, RGB). The pixel limit is checked from the
header before any pixel is decoded: a decompression bomb (a small file that declares a huge
canvas) is rejected without allocating it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from core.io.storage import blob_path

MAX_PIXELS = 50_000_000  # 50 MP: far above any face stimulus, far below a memory problem
THUMBNAIL_SIDE = 256
THUMBNAIL_QUALITY = 85
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # camera JPEGs with an embedded preview
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
ANIMATED_FORMATS = ("PNG", "WEBP")  # APNG and animated WebP; MPO and multi-page TIFF are stills
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff")
SUPPORTED = "JPEG, PNG, WebP, BMP or TIFF"


class ImageError(ValueError):
    """An upload that is not a usable image; the message says why and what to do."""


@dataclass(frozen=True)
class ImageInfo:
    """What the database records about a decoded stimulus."""

    media_type: str
    width: int  # after EXIF orientation
    height: int
    thumbnail: bytes  # JPEG, longest side at most THUMBNAIL_SIDE


Source = bytes | BinaryIO | Path


def open_image(source: Source, *, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, str]:
    """Decode ``source`` fully into an upright RGB image; returns (image, media type).

    Raises :class:`ImageError` for empty, corrupt, unsupported or oversized images.
    """
    stream = _as_stream(source)
    if _is_empty(stream):
        raise ImageError("the file is empty (0 bytes). Export or copy the image again.")
    image = _open_checked(stream, max_pixels)
    media_type = MEDIA_TYPES[image.format]
    if image.format in ANIMATED_FORMATS and getattr(image, "is_animated", False):
        raise ImageError(
            f"animated {image.format} images are not supported ({image.n_frames} frames; "
            "models see one still image). Export the frame the raters saw as a still image."
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ImageError(
            f"the image data is corrupt or truncated ({error}). "
            "Open and re-save it in an image editor, or export it again."
        ) from error
    return to_rgb(image), media_type


def inspect_image(source: Source, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Validate and measure an image and make its thumbnail."""
    image, media_type = open_image(source, max_pixels=max_pixels)
    return ImageInfo(media_type, image.width, image.height, thumbnail_jpeg(image))


def load_rgb(sha256: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The stored stimulus ``sha256`` as an (H, W, 3) uint8 RGB array, EXIF orientation applied."""
    return load_blob_rgb(blob_path(sha256), max_pixels=max_pixels)


def load_blob_rgb(path: Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """:func:`load_rgb` of a blob file given by path (named by its hash), for worker processes
    that must not depend on the data-folder setting of their parent."""
    if not path.exists():
        raise ImageError(
            f"stimulus blob {path.name[:12]}… is missing from {path.parent.parent}. "
            "Check the data folder setting, or re-import the stimulus."
        )
    image, _ = open_image(path, max_pixels=max_pixels)
    return np.asarray(image, dtype=np.uint8)


def thumbnail_jpeg(image: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    """JPEG bytes of ``image`` shrunk (never enlarged) to fit a ``side`` x ``side`` box."""
    thumb = to_rgb(image).copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


BLURRED_SIDE = 96
BLURRED_DETAIL = 8  # pixels across the face before the blur: no one is recognisable at this size


def blurred_thumbnail(thumbnail: bytes, side: int = BLURRED_SIDE) -> bytes:
    """A small blurred JPEG of a stored thumbnail, for viewers who may not see the faces.

    The image is first shrunk to :data:`BLURRED_DETAIL` pixels, so no detail survives to be
    sharpened back; the blur only smooths the blocks.
    """
    with Image.open(io.BytesIO(thumbnail)) as source:
        image = to_rgb(source)
        tiny = image.resize((BLURRED_DETAIL, BLURRED_DETAIL), Image.Resampling.BOX)
    shown = tiny.resize((side, side), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(side / 16))
    buffer = io.BytesIO()
    shown.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of any Pillow mode: transparency onto white, 16-bit/float scaled to 8 bit.

    16-bit values are divided by 257 (65535 -> 255) and 0..1 floats multiplied by 255, so a
    dark image stays dark; only values outside those ranges are stretched to 0..255.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image))).convert("RGB")
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    floating = values.dtype.kind == "f"
    values = np.nan_to_num(values.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    if floating and 0 <= low and high <= 1:
        return np.round(values * 255).astype(np.uint8)
    if not floating and 0 <= low and high <= 65535:
        return np.round(values / 257).astype(np.uint8)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) / (high - low) * 255).astype(np.uint8)


def _as_stream(source: Source) -> BinaryIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    if isinstance(source, Path):
        return io.BytesIO(source.read_bytes())
    return source


def _is_empty(stream: BinaryIO) -> bool:
    start = stream.tell()
    empty = stream.read(1) == b""
    stream.seek(start)
    return empty


def _open_checked(stream: BinaryIO, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and enforce the format whitelist and the pixel limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except Image.DecompressionBombError as error:
        raise ImageError(_too_large_message(str(error), max_pixels)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(
            f"this is not an image that can be read (expected {SUPPORTED}). "
            "Check that the file is an image and not a document, archive or shortcut."
        ) from error
    if image.format not in MEDIA_TYPES:
        raise ImageError(
            f"{image.format} images are not supported. Convert it to {SUPPORTED} and upload again."
        )
    width, height = image.size
    if width * height > max_pixels:
        detail = f"{width} x {height} = {width * height / 1e6:.1f} megapixels"
        raise ImageError(_too_large_message(detail, max_pixels))
    return image


def _too_large_message(detail: str, max_pixels: int) -> str:
    return (
        f"the image is too large ({detail}); the limit is {max_pixels / 1e6:.0f} megapixels "
        "(protection against decompression bombs). Downscale it and upload again."
    )
