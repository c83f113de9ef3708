"""Rendering of a label mask as the contract's three PNG images.

* *mask*: each class's pixels in its class colour on black, ``(H, W)`` RGB;
* *overlay*: the mask blended over the input (``OVERLAY_ALPHA`` of class colour
  where a defect is, the input elsewhere), ``(H, W)`` RGB;
* *combined*: the input and the overlay side by side, ``(H, 2W)`` RGB.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageColor

OVERLAY_ALPHA = 0.5
"""Weight of the class colour in the overlay where a defect is."""

RGBImage = NDArray[np.uint8]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)``, 0..255.

    Raises:
        ValueError: if ``color`` is not a colour Pillow understands.
    """
    r, g, b = ImageColor.getrgb(color)[:3]
    return r, g, b


def to_rgb(image: NDArray[np.uint8]) -> RGBImage:
    """An ``(H, W)`` grey or ``(H, W, 3)`` RGB ``uint8`` image as ``(H, W, 3)`` RGB.

    Raises:
        ValueError: for any other shape.
    """
    if image.ndim == 2:
        return np.repeat(image[:, :, np.newaxis], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def colour_mask(label_mask: NDArray[np.integer[Any]], colors: dict[int, str]) -> RGBImage:
    """``(H, W, 3)`` image: each class id's pixels in ``colors[class_id]``, black elsewhere.

    Class ids missing from ``colors`` stay black.
    """
    lut = np.zeros((int(max(colors, default=0)) + 1, 3), dtype=np.uint8)
    for class_id, color in colors.items():
        lut[class_id] = hex_to_rgb(color)
    if label_mask.size and (label_mask.min() < 0 or label_mask.max() >= len(lut)):
        label_mask = np.where((label_mask >= 0) & (label_mask < len(lut)), label_mask, 0)
    return lut[label_mask]


def overlay(image: RGBImage, mask_rgb: RGBImage, label_mask: NDArray[np.integer[Any]]) -> RGBImage:
    """Blend ``mask_rgb`` over ``image`` with weight ``OVERLAY_ALPHA`` where ``label_mask > 0``.

    Only the defect pixels are converted to float32 (elsewhere the input is copied as is):
    a whole-image float32 copy would cost 12 bytes per pixel.
    """
    out = image.copy()
    defect = label_mask > 0
    blended = np.empty(out[defect].shape, dtype=np.float32)
    blended[...] = (1 - OVERLAY_ALPHA) * image[defect].astype(np.float32) + (
        OVERLAY_ALPHA * mask_rgb[defect]
    )
    out[defect] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def png_bytes(image: RGBImage) -> bytes:
    """Encode an ``(H, W, 3)`` ``uint8`` image as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def render_pngs(
    image: NDArray[np.uint8], label_mask: NDArray[np.integer[Any]], colors: dict[int, str]
) -> dict[str, bytes]:
    """The contract's three images as PNG bytes: keys ``combined``, ``mask``, ``overlay``.

    Args:
        image: the input, ``(H, W)`` grey or ``(H, W, 3)`` RGB ``uint8``.
        label_mask: ``(H, W)`` class ids, 0 = background.
        colors: class id -> ``"#rrggbb"``.

    Returns:
        ``mask`` and ``overlay`` are ``W x H``; ``combined`` is ``2W x H``.

    Raises:
        ValueError: if the image has another shape or the mask's shape differs.
    """
    rgb = to_rgb(image)
    if label_mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {label_mask.shape} != image shape {rgb.shape[:2]}")
    # One image array at a time beside the input and the overlay: each is freed once
    # encoded (at 50 Mpx an RGB array is 150 MB, Pillow's copy of it 200 MB).
    mask_rgb = colour_mask(label_mask, colors)
    over = overlay(rgb, mask_rgb, label_mask)
    pngs = {"mask": png_bytes(mask_rgb)}
    del mask_rgb
    pngs["overlay"] = png_bytes(over)
    combined = np.concatenate([rgb, over], axis=1)
    del rgb, over
    pngs["combined"] = png_bytes(combined)
    return {key: pngs[key] for key in ("combined", "mask", "overlay")}
