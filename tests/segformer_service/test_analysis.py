"""Region analysis: formulas and synthetic masks with known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segformer_service.analysis import (
    analyse_label_mask,
    aspect_ratio,
    circularity,
    describe_regions,
)

NAMES = {1: "open", 5: "spurious_copper", 6: "pin_hole"}


def test_circularity_matches_contract_example() -> None:
    # docs/model-service-contract.md: A = 14, P = 15.31 -> 4*pi*14/15.31**2 = 0.7506
    assert circularity(14, 15.31) == pytest.approx(4 * math.pi * 14 / 15.31**2)
    assert round(circularity(14, 15.31), 2) == 0.75


def test_circularity_of_zero_perimeter_is_zero() -> None:
    assert circularity(1, 0.0) == 0.0


def test_aspect_ratio_is_major_over_minor_and_guards_zero() -> None:
    assert aspect_ratio(6.43, 4.37) == pytest.approx(6.43 / 4.37)
    assert aspect_ratio(5.0, 0.0) == 0.0


def test_rectangle_region_geometry() -> None:
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:14, 20:32] = True  # 4 rows x 12 columns at x=20, y=10
    (region,) = describe_regions(mask)
    assert region["region_id"] == 1
    assert region["area_pixels"] == 48
    assert region["bounding_box"] == {"x": 20, "y": 10, "width": 12, "height": 4}
    assert region["centroid"] == {"x": 25.5, "y": 11.5}
    assert region["major_axis"] > region["minor_axis"] > 0
    assert region["aspect_ratio"] == pytest.approx(
        region["major_axis"] / region["minor_axis"], abs=0.01
    )
    assert region["circularity"] == pytest.approx(
        4 * math.pi * 48 / region["perimeter"] ** 2, abs=0.01
    )


def test_disk_is_the_roundest_shape() -> None:
    yy, xx = np.mgrid[:101, :101]
    (disk,) = describe_regions((yy - 50) ** 2 + (xx - 50) ** 2 <= 30**2)
    (square,) = describe_regions((abs(yy - 50) <= 27) & (abs(xx - 50) <= 27))
    # The digitised perimeter is a little longer than 2πr, so a disk scores ~0.9.
    assert 0.85 < disk["circularity"] <= 1.0
    assert square["circularity"] < disk["circularity"]
    assert disk["aspect_ratio"] == pytest.approx(1.0, abs=0.01)


def test_single_pixel_region_has_guarded_ratios() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 3] = True
    (region,) = describe_regions(mask)
    assert region["area_pixels"] == 1
    assert region["circularity"] == 0.0
    assert region["aspect_ratio"] == 0.0


def test_label_mask_summary_per_class() -> None:
    label_mask = np.zeros((50, 50), dtype=np.int32)
    label_mask[2:5, 2:5] = 5  # 9 px
    label_mask[20:22, 30:40] = 5  # 20 px
    label_mask[40:47, 10:12] = 6  # 14 px
    label_mask[0:3, 45:50] = 9  # an id without a name: ignored
    classes = analyse_label_mask(label_mask, NAMES)
    assert list(classes) == ["spurious_copper", "pin_hole"]  # "open" has no region
    copper = classes["spurious_copper"]
    assert copper["class_id"] == 5
    assert copper["total_regions"] == 2
    assert [r["area_pixels"] for r in copper["regions"]] == [9, 20]
    assert copper["total_area_pixels"] == 29
    assert [r["region_id"] for r in copper["regions"]] == [1, 2]
    assert classes["pin_hole"]["total_area_pixels"] == 14


def test_diagonal_pixels_form_one_region() -> None:
    label_mask = np.eye(6, dtype=np.int32)
    classes = analyse_label_mask(label_mask, NAMES)
    assert classes["open"]["total_regions"] == 1


def test_empty_mask_has_no_classes() -> None:
    assert analyse_label_mask(np.zeros((8, 8), dtype=np.int32), NAMES) == {}


def test_regions_are_measured_in_image_coordinates() -> None:
    """Each class is measured on its own box; centroids and boxes stay image-relative."""
    label_mask = np.zeros((60, 80), dtype=np.int32)
    label_mask[30:34, 50:60] = 5  # 4 x 10 px
    label_mask[10:12, 5:8] = 5  # 2 x 3 px, so the class box starts at (10, 5)
    label_mask[45:48, 70:73] = 6
    whole = describe_regions(label_mask == 5)
    classes = analyse_label_mask(label_mask, NAMES)
    assert classes["spurious_copper"]["regions"] == whole
    bar = whole[1]
    assert bar["bounding_box"] == {"x": 50, "y": 30, "width": 10, "height": 4}
    assert bar["centroid"] == {"x": 54.5, "y": 31.5}
    (pad,) = classes["pin_hole"]["regions"]
    assert pad["bounding_box"] == {"x": 70, "y": 45, "width": 3, "height": 3}
    assert pad["centroid"] == {"x": 71.0, "y": 46.0}
