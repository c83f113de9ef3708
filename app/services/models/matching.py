"""Which region of one model's answer is which region of another's, on the same image.

A region is one 8-connected component of one class colour in a mask PNG (the model
service's `mask`: class colours on black; segformer_service/analysis.py), the same
definition the COCO export recovers regions by (`app.services.history.coco`). Two regions
match when they have the **same defect class** and the **IoU of their pixels** is at
least the threshold (MODEL_MATCH_MIN_IOU, 0.5 by default). When a region's pixels cannot
be recovered from its mask (mask missing, or no component with the region's box and
area), the IoU of the two bounding boxes is used instead for that pair.

Matching is one-to-one and greedy: every candidate pair of one class is scored, then
pairs are taken from the highest IoU down, each region at most once (the same rule as
the COCO evaluation's matching of detections to ground truth).

A region that matches none but **overlaps** a region of the same class in the other
answer (matched or not) is *overlapping*: the same defect, outlined differently (a
fragment of it, or grown over it) — the IoU is above 0 but below the threshold, or its
partner was taken by a better pair. Overlap is "some pixel in common" when both regions'
pixels are recovered, else "the bounding boxes intersect". The comparison reports these
apart and counts them as a miss of neither model (docs/models.md).

A class confusion (a short of one model where the other found a spur, same pixels) is
**not** a match: it counts as a region found by A only and one found by B only. The
reviewer's verdict on the primary region is about *that* call, of *that* class; a region
of another class at the same place is another claim (docs/models.md).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage

from app.services.history.coco import RegionBox
from app.services.history.coco import _component as region_component

DEFAULT_MIN_IOU = 0.5


@dataclass(frozen=True)
class MatchRegion:
    """One region to match: its defect class, bounding box and area (pixels)."""

    class_name: str
    x: int
    y: int
    width: int
    height: int
    area_pixels: int

    @property
    def box(self) -> RegionBox:
        """As the COCO export's `RegionBox`."""
        return RegionBox(self.x, self.y, self.width, self.height, self.area_pixels)


@dataclass(frozen=True)
class Match:
    """A matched pair: indexes into the two region lists, and their IoU (0..1).

    `by_mask` says whether the IoU is of the pixels (True) or of the boxes."""

    a: int
    b: int
    iou: float
    by_mask: bool


def decode_mask(png: bytes | None, height: int, width: int) -> NDArray[np.uint8] | None:
    """The RGB pixels (`height` x `width` x 3) of a mask PNG, or None when it is absent,
    does not decode, or has another size.

    Blocking (decodes a PNG): run it in a worker thread.
    """
    if png is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(png)) as img:
                rgb = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError):
        return None
    if rgb.shape[:2] != (height, width):
        return None
    return rgb


def _pixels(rgb: NDArray[np.uint8] | None, region: MatchRegion) -> NDArray[np.bool_] | None:
    if rgb is None:
        return None
    component = region_component(rgb, region.box)
    return None if component is None else component.astype(bool)


def box_iou(a: MatchRegion, b: MatchRegion) -> float:
    """IoU of two bounding boxes (0 when they do not overlap or are empty)."""
    w = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    h = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def mask_iou(a: MatchRegion, pa: NDArray[np.bool_], b: MatchRegion, pb: NDArray[np.bool_]) -> float:
    """IoU of two regions' pixels, each given within its own bounding box."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1 = min(a.x + a.width, b.x + b.width)
    y1 = min(a.y + a.height, b.y + b.height)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    sa = pa[y0 - a.y : y1 - a.y, x0 - a.x : x1 - a.x]
    sb = pb[y0 - b.y : y1 - b.y, x0 - b.x : x1 - b.x]
    inter = int(np.count_nonzero(sa & sb))
    union = int(np.count_nonzero(pa)) + int(np.count_nonzero(pb)) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Pairing:
    """The matches of two answers, and which unmatched regions overlap the other answer.

    Attributes:
        matches: the matched pairs, one-to-one, in order of `a` index.
        a_overlaps: for each unmatched region of `a` that overlaps a same-class region of
            `b`, that region's index in `b` (the highest IoU; the lowest index on a tie).
        b_overlaps: the same for the unmatched regions of `b`.
    """

    matches: list[Match]
    a_overlaps: dict[int, int]
    b_overlaps: dict[int, int]


def match_regions(
    a_regions: Sequence[MatchRegion],
    a_mask: NDArray[np.uint8] | None,
    b_regions: Sequence[MatchRegion],
    b_mask: NDArray[np.uint8] | None,
    min_iou: float = DEFAULT_MIN_IOU,
) -> list[Match]:
    """Match the regions of two answers on one image (see the module's docstring).

    Args:
        a_regions, b_regions: the regions of each answer.
        a_mask, b_mask: each answer's mask as RGB pixels (`decode_mask`), or None (then
            that answer's regions are compared by bounding box).
        min_iou: the least IoU of a match, 0..1.

    Returns:
        The matches, one-to-one, in order of `a` index.
    """
    return pair_regions(a_regions, a_mask, b_regions, b_mask, min_iou).matches


def pair_regions(
    a_regions: Sequence[MatchRegion],
    a_mask: NDArray[np.uint8] | None,
    b_regions: Sequence[MatchRegion],
    b_mask: NDArray[np.uint8] | None,
    min_iou: float = DEFAULT_MIN_IOU,
) -> Pairing:
    """Match the regions of two answers on one image, and find the unmatched regions that
    overlap a same-class region of the other answer (see the module's docstring; the
    arguments as `match_regions`'s).

    Returns:
        The `Pairing`.
    """
    a_pixels = [_pixels(a_mask, r) for r in a_regions]
    b_pixels = [_pixels(b_mask, r) for r in b_regions]
    candidates: list[tuple[float, int, int, bool]] = []
    overlapping: list[tuple[float, int, int]] = []
    for i, ra in enumerate(a_regions):
        for j, rb in enumerate(b_regions):
            if ra.class_name != rb.class_name or box_iou(ra, rb) == 0.0:
                continue
            pa, pb = a_pixels[i], b_pixels[j]
            if pa is not None and pb is not None:
                iou, by_mask = mask_iou(ra, pa, rb, pb), True
            else:
                iou, by_mask = box_iou(ra, rb), False
            if iou > 0.0:
                overlapping.append((iou, i, j))
            if iou >= min_iou:
                candidates.append((iou, i, j, by_mask))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    used_a: set[int] = set()
    used_b: set[int] = set()
    matches: list[Match] = []
    for iou, i, j, by_mask in candidates:
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        matches.append(Match(i, j, round(iou, 6), by_mask))
    a_overlaps: dict[int, int] = {}
    b_overlaps: dict[int, int] = {}
    for _iou, i, j in sorted(overlapping, key=lambda c: (-c[0], c[1], c[2])):
        if i not in used_a:
            a_overlaps.setdefault(i, j)
        if j not in used_b:
            b_overlaps.setdefault(j, i)
    return Pairing(sorted(matches, key=lambda m: m.a), a_overlaps, b_overlaps)
