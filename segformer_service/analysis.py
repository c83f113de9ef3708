"""Region analysis of a label mask: the ``classes`` object of the contract's answer.

Each defect class's mask is split into connected components (8-connectivity),
and each component (*region*) is measured with scikit-image ``regionprops``.
All lengths are in pixels, areas in pixels², coordinates with x = column,
y = row, origin at the image's top-left corner.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.measure import label, regionprops

_DECIMALS = 2


def circularity(area: float, perimeter: float) -> float:
    """Circularity ``4πA/P²`` (1 for a disk, smaller for elongated or ragged shapes).

    Args:
        area: region area, pixels.
        perimeter: region perimeter, pixels.

    Returns:
        ``4π·area/perimeter²``; ``0.0`` when ``perimeter`` is 0 (an empty region;
        a single pixel has scikit-image perimeter 0 and also gets 0.0, meaning
        "no measurable shape" rather than a perfect disk).
    """
    if perimeter <= 0:
        return 0.0
    return 4.0 * math.pi * area / (perimeter * perimeter)


def aspect_ratio(major_axis: float, minor_axis: float) -> float:
    """``major_axis / minor_axis`` of the region's moment-equivalent ellipse.

    Returns ``0.0`` when ``minor_axis`` is 0 (a one-pixel-wide line or a single
    pixel, whose ellipse is degenerate).
    """
    if minor_axis <= 0:
        return 0.0
    return major_axis / minor_axis


def describe_regions(
    mask: NDArray[np.bool_], origin: tuple[int, int] = (0, 0)
) -> list[dict[str, Any]]:
    """Measure every connected component (8-connectivity) of a boolean ``(H, W)`` mask.

    ``origin`` (row, column, pixels) is where ``mask`` lies in the image when it is
    a crop; it is added to the centroids and bounding boxes.

    Returns:
        One dict per region, ordered by label (row-major scan), with ``region_id``
        (1-based), ``centroid`` ``{x, y}``, ``bounding_box`` ``{x, y, width, height}``
        (top-left corner and size), ``area_pixels``, ``perimeter``, ``major_axis``,
        ``minor_axis`` (``regionprops`` ``axis_major_length``/``axis_minor_length``),
        ``circularity`` (4πA/P²) and ``aspect_ratio`` (major/minor); floats
        rounded to 2 decimals (circularity and aspect ratio from unrounded values).
    """
    regions: list[dict[str, Any]] = []
    labels = label(mask, connectivity=2)
    for region_id, props in enumerate(regionprops(labels), start=1):
        min_row, min_col, max_row, max_col = props.bbox
        min_row, max_row = min_row + origin[0], max_row + origin[0]
        min_col, max_col = min_col + origin[1], max_col + origin[1]
        row, col = props.centroid
        row, col = row + origin[0], col + origin[1]
        area = int(props.area)
        perimeter = float(props.perimeter)
        major = float(props.axis_major_length)
        minor = float(props.axis_minor_length)
        regions.append(
            {
                "region_id": region_id,
                "centroid": {"x": round(float(col), _DECIMALS), "y": round(float(row), _DECIMALS)},
                "bounding_box": {
                    "x": int(min_col),
                    "y": int(min_row),
                    "width": int(max_col - min_col),
                    "height": int(max_row - min_row),
                },
                "area_pixels": area,
                "perimeter": round(perimeter, _DECIMALS),
                "major_axis": round(major, _DECIMALS),
                "minor_axis": round(minor, _DECIMALS),
                "circularity": round(circularity(area, perimeter), _DECIMALS),
                "aspect_ratio": round(aspect_ratio(major, minor), _DECIMALS),
            }
        )
    return regions


def analyse_label_mask(
    label_mask: NDArray[np.integer[Any]], class_name_by_id: dict[int, str]
) -> dict[str, dict[str, Any]]:
    """Build the contract's ``classes`` object from a label mask.

    Args:
        label_mask: ``(H, W)`` array of class ids, 0 = background.
        class_name_by_id: class id -> class name; ids not in it are ignored.

    Returns:
        ``{class_name: {"class_id", "total_regions", "total_area_pixels", "regions"}}``
        for every class with at least one region, in class-id order;
        ``total_area_pixels`` is the sum of the regions' ``area_pixels``.
    """
    classes: dict[str, dict[str, Any]] = {}
    positive = [class_id for class_id in class_name_by_id if class_id > 0]
    # One pass gives every positive class's bounding box (None when absent): each
    # class is then labelled and measured on its own box, not on the whole image.
    boxes = ndi.find_objects(label_mask, max_label=max(positive)) if positive else []
    for class_id in sorted(class_name_by_id):
        if class_id > 0:
            box = boxes[class_id - 1]
            if box is None:
                continue
            origin = (int(box[0].start), int(box[1].start))
            regions = describe_regions(label_mask[box] == class_id, origin)
        else:
            regions = describe_regions(label_mask == class_id)
        if not regions:
            continue
        classes[class_name_by_id[class_id]] = {
            "class_id": class_id,
            "total_regions": len(regions),
            "total_area_pixels": sum(r["area_pixels"] for r in regions),
            "regions": regions,
        }
    return classes
