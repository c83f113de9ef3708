"""Decoding guards of the inspection workflow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from segformer_service.config import ServiceSettings
from segformer_service.errors import InvalidImage
from segformer_service.inspection import InspectionService, decode_image, model_version


def _encode(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "JPEG"])
def test_grey_formats_decode_to_2d(fmt: str) -> None:
    pixels = decode_image(_encode(Image.new("L", (30, 20), 77), fmt), max_pixels=10_000)
    assert pixels.shape == (20, 30)
    assert pixels.dtype == np.uint8


def test_rgba_decodes_to_rgb() -> None:
    pixels = decode_image(_encode(Image.new("RGBA", (8, 6), (1, 2, 3, 4)), "PNG"), 10_000)
    assert pixels.shape == (6, 8, 3)
    assert tuple(pixels[0, 0]) == (1, 2, 3)


def test_too_many_pixels_is_refused_before_decoding() -> None:
    data = _encode(Image.new("L", (200, 100)), "PNG")
    with pytest.raises(InvalidImage, match="200 x 100 pixels exceeds the limit of 19999"):
        decode_image(data, max_pixels=19_999)


def test_garbage_is_invalid() -> None:
    with pytest.raises(InvalidImage, match="not a recognised image format"):
        decode_image(b"\x00\x01garbage", max_pixels=10_000)


def test_the_answer_names_the_model_and_a_version_that_follows_the_settings() -> None:
    png = _encode(Image.new("RGB", (32, 24), (40, 120, 40)), "PNG")
    answer = InspectionService(ServiceSettings(_env_file=None)).inspect(png, "board.png")  # type: ignore[call-arg]
    assert answer.model_name == "reference-classical"
    assert answer.model_version == model_version(ServiceSettings(_env_file=None))  # type: ignore[call-arg]
    package, digest = answer.model_version.split("+")
    assert package
    assert len(digest) == 12
    # Results-shaping settings change the version; size limits do not.
    assert model_version(ServiceSettings(max_upload_size_mb=1)) == answer.model_version
    assert model_version(ServiceSettings(class_ids=[1, 2, 3, 4, 5, 7])) != answer.model_version
