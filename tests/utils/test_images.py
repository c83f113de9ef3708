"""Image validation by content."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from app.errors import BadImage, ImageTooLarge, UnsupportedImage
from app.utils.images import validate_image
from tests.support import make_image


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("TIFF", "image/tiff"), ("BMP", "image/bmp")],
)
def test_accepted_formats_are_recognised_by_content(
    tmp_path: Path, fmt: str, media_type: str
) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(make_image(fmt, (30, 20)))
    info = validate_image(path, "upload.bin", 10_000)
    assert (info.format, info.media_type, info.width, info.height) == (fmt, media_type, 30, 20)


def test_gif_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    buffer = io.BytesIO()
    PILImage.new("L", (4, 4)).save(buffer, "GIF")
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsupportedImage, match="not a JPEG, PNG, TIFF or BMP"):
        validate_image(path, "a.png", 10_000)


def test_truncated_png_is_a_bad_image(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(make_image("PNG", (200, 200))[:60])
    with pytest.raises(BadImage):
        validate_image(path, "a.png", 100_000)


def test_too_many_pixels_is_refused_without_touching_pillows_global_limit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(make_image("PNG", (200, 200)))
    limit_before = PILImage.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        validate_image(path, "a.png", 10_000)
    assert limit_before == PILImage.MAX_IMAGE_PIXELS
    assert validate_image(path, "a.png", 40_000).width == 200
