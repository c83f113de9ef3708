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


def test_a_png_with_a_wrong_chunk_checksum_is_a_bad_image(tmp_path: Path) -> None:
    data = bytearray(make_image("PNG", (64, 48)))
    at = data.index(b"IDAT")
    length = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 + length] ^= 0xFF  # the IDAT chunk's CRC
    path = tmp_path / "a.png"
    path.write_bytes(bytes(data))
    with pytest.raises(BadImage, match="checksum"):
        validate_image(path, "a.png", 100_000)


def test_a_multi_page_tiff_is_refused_with_what_to_do(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    pages = [PILImage.new("L", (16, 16), v) for v in (0, 128, 255)]
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    path = tmp_path / "scan.tif"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(BadImage, match=r"3 pages.*one page per image"):
        validate_image(path, "scan.tif", 100_000)


def test_a_truncated_jpeg_is_a_bad_image_although_decoded_at_reduced_scale(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.jpg"
    buffer = io.BytesIO()
    PILImage.effect_noise((400, 300), 64).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(BadImage, match="truncated"):
        validate_image(path, "a.jpg", 1_000_000)


def test_no_message_quotes_the_files_bytes(tmp_path: Path) -> None:
    """Messages reach clients, logs and hot-folder notes, and the file may be anything (a
    secret behind a link): what it holds is never quoted."""
    path = tmp_path / "key.png"
    path.write_bytes(b"SECRET-KEY-0123456789")
    with pytest.raises(UnsupportedImage) as refused:
        validate_image(path, "key.png", 10_000)
    assert "SECRET" not in str(refused.value)
    assert "'key.png' is not a JPEG, PNG, TIFF or BMP image by its content" in str(refused.value)
    whole = make_image("PNG", (40, 40))
    # The last chunk's type replaced: Pillow's message quotes it (`chunk b'S3C!'`), ours not.
    path.write_bytes(whole[:-8] + b"S3C!" + whole[-4:])
    with pytest.raises(BadImage) as damaged:
        validate_image(path, "key.png", 10_000)
    assert "broken PNG file (chunk ...)" in str(damaged.value)
    assert "S3C" not in str(damaged.value)
