"""Pixel work of the golden-board library: decoding, coarse matching, registration, crops.

Pure functions on numpy arrays, blocking: callers run them in a worker thread (through the
agent's decode limiter for whole-image decodes), never on the event loop.

Conventions (the same as the reference service's template engine,
`segformer_service/engines/template.py`): an offset `(dx, dy)` in pixels says that the
golden board's pixel `(x, y)` lies at `(x + dx, y + dy)` in the inspected image, so the
inspected pixel `(x, y)` shows the golden pixel `(x - dx, y - dy)`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage as ndi
from skimage.registration import phase_cross_correlation

COARSE_FACTOR = 8
"""Coarse matching reduces both images by this factor along each axis (640 px -> 80 px):
a few pixels of offset are < 1 coarse pixel, so correlation at zero shift ranks well."""
UPSAMPLE_FACTOR = 10
"""Phase correlation refines the peak to 1/10 pixel (Guizar-Sicairos et al. 2008)."""


@dataclass(frozen=True)
class GoldenPixels:
    """A decoded golden image: `pixels` as stored for crops (`(H, W)` grey or `(H, W, 3)`
    RGB, `uint8`), `grey` `(H, W)` `float32` for registration, and its coarse signature."""

    pixels: NDArray[np.uint8]
    grey: NDArray[np.float32]
    signature: NDArray[np.float32]

    @property
    def width(self) -> int:
        """Width, pixels."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """Height, pixels."""
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class Registration:
    """Where a golden board lies in an inspected image: offset `dx`, `dy` (pixels,
    sub-pixel) and `score`, the normalised cross-correlation of the overlapping parts
    after the shift (-1..1)."""

    dx: float
    dy: float
    score: float


def decode(data: bytes) -> NDArray[np.uint8]:
    """The first frame of an image file's bytes as `uint8`: `(H, W)` for grey and
    bilevel images, `(H, W, 3)` for everything else (RGB).

    Raises:
        OSError, ValueError, SyntaxError: Pillow cannot decode the bytes.
    """
    with warnings.catch_warnings():
        # Sizes are checked by the caller (MAX_IMAGE_PIXELS) before decoding.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            if img.mode in ("1", "L", "LA"):
                return np.asarray(img.convert("L"), dtype=np.uint8)
            if img.mode.startswith("I"):
                return np.asarray(
                    img.convert("I").point(lambda v: v / 256).convert("L"), dtype=np.uint8
                )
            return np.asarray(img.convert("RGB"), dtype=np.uint8)


def to_grey(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """`(H, W)` `float32` grey of a grey or RGB image (ITU-R BT.601 luma weights)."""
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey: NDArray[np.float32] = pixels[..., :3].astype(np.float32) @ weights
    return grey


def coarse_signature(
    grey: NDArray[np.floating[Any]], factor: int = COARSE_FACTOR
) -> NDArray[np.float32]:
    """Area-average `grey` down by `factor`, normalised to zero mean and unit L2 norm, so the
    dot product of two signatures is their normalised cross-correlation (as the reference
    service's template search, `segformer_service/engines/template.py`).

    Returns:
        `(H // factor, W // factor)` `float32` (all zeros for a flat image).
    """
    h, w = max(1, grey.shape[0] // factor), max(1, grey.shape[1] // factor)
    f = min(factor, grey.shape[0], grey.shape[1])
    small = grey[: h * f, : w * f].astype(np.float32).reshape(h, f, w, f).mean(axis=(1, 3))
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    result: NDArray[np.float32] = small / norm if norm > 0 else small
    return result


def golden_pixels(data: bytes) -> GoldenPixels:
    """Decode a golden image and prepare it for matching and crops.

    Raises:
        OSError, ValueError, SyntaxError: Pillow cannot decode the bytes.
    """
    pixels = decode(data)
    grey = to_grey(pixels)
    return GoldenPixels(pixels, grey, coarse_signature(grey))


def coarse_scores(grey: NDArray[np.float32], candidates: list[GoldenPixels]) -> list[float]:
    """Normalised cross-correlation at zero shift of the coarse signature of `grey` with
    each candidate's (same size as `grey`), -1..1, in the order given."""
    signature = coarse_signature(grey).ravel()
    return [float(c.signature.ravel() @ signature) for c in candidates]


def _same_shape(golden: NDArray[np.float32], shape: tuple[int, ...]) -> NDArray[np.float32]:
    """`golden` cropped or padded (with its mean) at the bottom/right to `shape`."""
    if golden.shape == shape:
        return golden
    out = np.full(shape, float(golden.mean()), dtype=np.float32)
    h, w = min(shape[0], golden.shape[0]), min(shape[1], golden.shape[1])
    out[:h, :w] = golden[:h, :w]
    return out


def register(inspected: NDArray[np.float32], golden: NDArray[np.float32]) -> Registration:
    """The global shift of `golden` onto `inspected` (both `(H, W)` grey), by phase
    correlation with sub-pixel refinement (scikit-image `phase_cross_correlation`,
    Guizar-Sicairos, Thurman & Fienup, *Opt. Lett.* 33, 156, 2008; `upsample_factor` 10),
    and the normalised cross-correlation of the overlap after a bilinear shift.

    A golden image of another size is cropped or padded to the inspected image's size
    first (top-left corners together).
    """
    moving = _same_shape(golden, inspected.shape)
    shift, _, _ = phase_cross_correlation(
        inspected, moving, upsample_factor=UPSAMPLE_FACTOR, normalization=None
    )
    dy, dx = float(shift[0]), float(shift[1])
    shifted = ndi.shift(moving, (dy, dx), order=1, mode="constant", cval=np.nan)
    valid = ~np.isnan(shifted)
    score = ncc(inspected[valid], shifted[valid]) if valid.sum() > 16 else 0.0
    return Registration(dx=dx, dy=dy, score=score)


def ncc(a: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]]) -> float:
    """Normalised cross-correlation (Pearson correlation) of two same-shape arrays, -1..1
    (0 when either is flat)."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def crop(
    pixels: NDArray[np.uint8], x: int, y: int, width: int, height: int, dx: float, dy: float
) -> NDArray[np.uint8]:
    """The golden image's part that lies under the inspected box `(x, y, width, height)`:
    golden pixel = inspected pixel - `(dx, dy)`, the offset rounded to the nearest whole
    pixel (the sub-pixel rest, under half a pixel, is left: a crop is for the eye, and
    resampling would blur it). Parts outside the golden image are black (0).

    Returns:
        `(height, width)` or `(height, width, 3)` `uint8`, as `pixels`.
    """
    gx, gy = x - round(dx), y - round(dy)
    out = np.zeros((height, width, *pixels.shape[2:]), dtype=np.uint8)
    h, w = pixels.shape[0], pixels.shape[1]
    x0, y0 = max(gx, 0), max(gy, 0)
    x1, y1 = min(gx + width, w), min(gy + height, h)
    if x1 > x0 and y1 > y0:
        out[y0 - gy : y1 - gy, x0 - gx : x1 - gx] = pixels[y0:y1, x0:x1]
    return out


def png_bytes(pixels: NDArray[np.uint8]) -> bytes:
    """PNG file bytes of a grey or RGB `uint8` array (fast compression: crops are small)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
