"""Rendering of the mask, overlay and combined PNGs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from segformer_service.render import hex_to_rgb, render_pngs

COLORS = {1: "#e6194b", 5: "#4363d8"}


def _decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def _scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((30, 40), 200, dtype=np.uint8)
    label_mask = np.zeros((30, 40), dtype=np.int32)
    label_mask[5:10, 5:10] = 1
    label_mask[20:25, 30:35] = 5
    return image, label_mask


def test_hex_to_rgb() -> None:
    assert hex_to_rgb("#4363d8") == (0x43, 0x63, 0xD8)


def test_mask_is_class_colours_on_black() -> None:
    image, label_mask = _scene()
    mask = _decode(render_pngs(image, label_mask, COLORS)["mask"])
    assert mask.shape == (30, 40, 3)
    assert tuple(mask[7, 7]) == (0xE6, 0x19, 0x4B)
    assert tuple(mask[22, 32]) == (0x43, 0x63, 0xD8)
    assert tuple(mask[0, 0]) == (0, 0, 0)


def test_overlay_blends_half_and_keeps_background() -> None:
    image, label_mask = _scene()
    over = _decode(render_pngs(image, label_mask, COLORS)["overlay"])
    expected = tuple(int(np.rint((200 + c) / 2)) for c in (0xE6, 0x19, 0x4B))
    assert tuple(over[7, 7]) == expected
    assert tuple(over[0, 0]) == (200, 200, 200)


def test_combined_is_input_beside_overlay() -> None:
    image, label_mask = _scene()
    pngs = render_pngs(image, label_mask, COLORS)
    combined = _decode(pngs["combined"])
    assert combined.shape == (30, 80, 3)
    assert (combined[:, :40] == 200).all()
    assert (combined[:, 40:] == _decode(pngs["overlay"])).all()


def test_rgb_input_is_kept() -> None:
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[..., 1] = 90
    over = _decode(render_pngs(image, np.zeros((4, 6), dtype=np.int32), COLORS)["overlay"])
    assert (over == image).all()


def test_mismatched_mask_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="mask shape"):
        render_pngs(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.int32), COLORS)
