"""Image decoding: formats, EXIF orientation, bad input, decompression bombs, thumbnails."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.io.images import (
    MAX_PIXELS,
    ImageError,
    inspect_image,
    load_rgb,
    open_image,
    thumbnail_jpeg,
)
from core.io.storage import store_bytes

RED, BLUE = (255, 0, 0), (0, 0, 255)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def two_halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue: any rotation or flip changes where red ends up."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2 :] = BLUE
    return Image.fromarray(pixels)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression-bomb shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("fmt", "media_type", "options"),
    [
        ("JPEG", "image/jpeg", {"quality": 95}),
        ("PNG", "image/png", {}),
        ("WEBP", "image/webp", {"lossless": True}),
        ("BMP", "image/bmp", {}),
        ("TIFF", "image/tiff", {}),
    ],
)
def test_supported_formats_decode_to_rgb(fmt: str, media_type: str, options: dict) -> None:
    info = inspect_image(encode(two_halves(), fmt, **options))
    assert (info.media_type, info.width, info.height) == (media_type, 40, 20)
    image, _ = open_image(encode(two_halves(), fmt, **options))
    pixels = np.asarray(image)
    assert pixels.shape == (20, 40, 3)
    assert np.abs(pixels[10, 5].astype(int) - RED).max() < 40
    assert np.abs(pixels[10, 35].astype(int) - BLUE).max() < 40


@pytest.mark.parametrize(
    ("orientation", "size", "red_at", "blue_at"),
    [
        # EXIF 2.32 orientation tag: 6 = display after rotating 90 degrees clockwise, so the
        # stored left (red) half becomes the top; 3 = rotate 180, red moves to the right;
        # 8 = rotate 90 counter-clockwise, red ends at the bottom.
        (6, (20, 40), (10, 5), (10, 35)),
        (3, (40, 20), (35, 10), (5, 10)),
        (8, (20, 40), (10, 35), (10, 5)),
        (1, (40, 20), (5, 10), (35, 10)),
    ],
)
def test_exif_orientation_is_applied(orientation, size, red_at, blue_at) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(two_halves(), "JPEG", quality=95, exif=exif.tobytes())
    image, _ = open_image(data)
    assert image.size == size
    pixels = np.asarray(image).astype(int)
    assert np.abs(pixels[red_at[1], red_at[0]] - RED).max() < 40
    assert np.abs(pixels[blue_at[1], blue_at[0]] - BLUE).max() < 40
    assert inspect_image(data).width == size[0]


def test_load_rgb_reads_blob_with_orientation(data_dir) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    sha = store_bytes(encode(two_halves(), "JPEG", quality=95, exif=exif.tobytes()))
    pixels = load_rgb(sha)
    assert pixels.dtype == np.uint8 and pixels.shape == (40, 20, 3)
    assert pixels[5, 10, 0] > 200 and pixels[35, 10, 2] > 200


def test_load_rgb_missing_blob_is_clear(data_dir) -> None:
    with pytest.raises(ImageError, match="missing"):
        load_rgb("0" * 64)


def test_empty_file_is_rejected() -> None:
    with pytest.raises(ImageError, match="empty"):
        open_image(b"")


def test_non_image_is_rejected() -> None:
    with pytest.raises(ImageError, match="not an image"):
        open_image(b"stimulus,valence\nface01.jpg,3\n")


def test_truncated_jpeg_is_rejected() -> None:
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        open_image(data[: len(data) // 2])


def test_unsupported_format_names_itself() -> None:
    with pytest.raises(ImageError, match="GIF images are not supported"):
        open_image(encode(two_halves(), "GIF"))


def test_decompression_bomb_rejected_from_header() -> None:
    """8000 x 8000 = 64 MP is above our 50 MP limit but below Pillow's own warning level."""
    with pytest.raises(ImageError, match="too large.*64.0 megapixels"):
        open_image(png_header_only(8000, 8000))


def test_giant_declared_canvas_rejected() -> None:
    """30000 x 30000 also trips Pillow's DecompressionBombError inside Image.open."""
    with pytest.raises(ImageError, match="too large"):
        open_image(png_header_only(30000, 30000))


def test_pixel_limit_is_explicit() -> None:
    data = encode(two_halves(), "PNG")
    assert open_image(data, max_pixels=800)[0].size == (40, 20)
    with pytest.raises(ImageError, match="too large"):
        open_image(data, max_pixels=799)
    assert MAX_PIXELS == 50_000_000


def test_transparency_goes_onto_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image, _ = open_image(encode(rgba, "PNG"))
    assert np.asarray(image)[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_png_is_scaled_to_full_range() -> None:
    ramp = np.tile(np.linspace(0, 65535, 16, dtype=np.uint16), (4, 1))
    image, _ = open_image(encode(Image.fromarray(ramp), "PNG"))
    pixels = np.asarray(image)
    assert pixels.shape == (4, 16, 3)
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255


@settings(max_examples=25, deadline=None)
@given(width=st.integers(1, 700), height=st.integers(1, 700))
def test_thumbnail_fits_box_and_keeps_aspect(width: int, height: int) -> None:
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(Image.new("RGB", (width, height), RED))))
    assert thumb.format == "JPEG"
    assert max(thumb.size) == min(256, max(width, height))
    if min(width, height) >= 32:
        assert abs(thumb.width / thumb.height - width / height) < 0.1 * width / height
