"""`pair_regions`: matches (same class, IoU ≥ threshold, greedy one-to-one) and the
overlapping regions (same defect, outlined differently) on hand-drawn masks."""

from __future__ import annotations

import numpy as np

from app.services.models.matching import MatchRegion, pair_regions

RED = (255, 0, 0)


def _mask(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    for x, y, w, h in boxes:
        rgb[y : y + h, x : x + w] = RED
    return rgb


def _region(x: int, y: int, w: int, h: int, name: str = "short") -> MatchRegion:
    return MatchRegion(name, x, y, w, h, w * h)


def test_a_fragment_overlaps_instead_of_being_found_by_one_only() -> None:
    # A: one 20x10 defect at (0, 0) and one at (40, 40). B: the first defect in two
    # fragments (12x10: IoU 0.6, a match; 6x10 beside it: IoU 0.3, overlapping), and a
    # region far from anything (B only). A's second defect: nothing of B (A only).
    a = [_region(0, 0, 20, 10), _region(40, 40, 10, 10)]
    b = [_region(0, 0, 12, 10), _region(14, 0, 6, 10), _region(30, 20, 5, 5)]
    pairing = pair_regions(
        a,
        _mask((0, 0, 20, 10), (40, 40, 10, 10)),
        b,
        _mask((0, 0, 12, 10), (14, 0, 6, 10), (30, 20, 5, 5)),
    )
    assert [(m.a, m.b, m.by_mask) for m in pairing.matches] == [(0, 0, True)]
    assert pairing.matches[0].iou == 0.6
    assert pairing.b_overlaps == {1: 0}  # the fragment overlaps A's matched region
    assert pairing.a_overlaps == {}


def test_overlap_needs_the_same_class_and_common_pixels() -> None:
    # A: an L (top row and left column of a 10x10 box, 19 pixels). B: a 3x3 block inside
    # that box but on none of its pixels, and a spur on A's second region (a confusion).
    a_mask = _mask((0, 0, 10, 1), (0, 0, 1, 10), (0, 20, 10, 10))
    a = [MatchRegion("short", 0, 0, 10, 10, 19), _region(0, 20, 10, 10)]
    b = [_region(5, 5, 3, 3), _region(0, 20, 10, 10, "spur")]
    pairing = pair_regions(a, a_mask, b, _mask((5, 5, 3, 3), (0, 20, 10, 10)))
    assert pairing.matches == []
    assert (pairing.a_overlaps, pairing.b_overlaps) == ({}, {})
    # Without B's mask the boxes decide: the block's box lies inside the L's.
    by_box = pair_regions(a, a_mask, b, None)
    assert (by_box.a_overlaps, by_box.b_overlaps) == ({0: 0}, {0: 0})


def test_by_boxes_when_a_mask_is_missing() -> None:
    a = [_region(0, 0, 10, 10)]
    b = [_region(6, 0, 10, 10)]  # box IoU 40 / 160 = 0.25: overlapping, not matched
    pairing = pair_regions(a, None, b, None)
    assert pairing.matches == []
    assert (pairing.a_overlaps, pairing.b_overlaps) == ({0: 0}, {0: 0})
