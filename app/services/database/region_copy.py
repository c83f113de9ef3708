"""Region rows as one PostgreSQL binary COPY stream, built column-wise with numpy.

An image may have thousands of regions; inserting them row by row (or adapting a
Python value per cell) costs far more CPU than the database's own work. Here the
values are taken out of the validated `Analysis` with one C-level getter per region,
packed into a numpy structured array laid out exactly as PostgreSQL's binary COPY
format wants each row (a 16-bit field count, then per field a 32-bit length and the
big-endian value), and sent in one `COPY ... FROM STDIN (FORMAT BINARY)`.

Format: PostgreSQL documentation, "COPY — Binary Format" (file header, tuples, trailer).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import numpy as np

from app.models.model_service import RegionAnalysis

# Columns of `regions` in COPY order, with their binary big-endian layout.
# `class_unique_id` and `img_unique_id` are the same for runs of rows; the rest come
# from each region (see `_REGION_VALUES`).
COPY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("class_unique_id", ">i8"),
    ("img_unique_id", "text"),
    ("region_id", ">i4"),
    ("centroid_x", ">f8"),
    ("centroid_y", ">f8"),
    ("bbox_x", ">i4"),
    ("bbox_y", ">i4"),
    ("bbox_width", ">i4"),
    ("bbox_height", ">i4"),
    ("area_pixels", ">i8"),
    ("perimeter", ">f8"),
    ("major_axis", ">f8"),
    ("minor_axis", ">f8"),
    ("circularity", ">f8"),
    ("aspect_ratio", ">f8"),
)
COPY_REGIONS_SQL = (
    f"COPY regions ({', '.join(name for name, _ in COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
)
# The region's own values, in COPY order after the two id columns.
_REGION_VALUES = attrgetter(
    "region_id",
    "centroid.x",
    "centroid.y",
    "bounding_box.x",
    "bounding_box.y",
    "bounding_box.width",
    "bounding_box.height",
    "area_pixels",
    "perimeter",
    "major_axis",
    "minor_axis",
    "circularity",
    "aspect_ratio",
)
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)


def region_copy_data(
    img_unique_id: str,
    classes: Sequence[tuple[int, Sequence[RegionAnalysis]]],
) -> bytes:
    """The binary COPY stream (header, one tuple per region, trailer) of `COPY_REGIONS_SQL`.

    Args:
        img_unique_id: the image every region belongs to.
        classes: (class_unique_id, its regions) per class, in the order to insert.

    Returns:
        The bytes to send as COPY data: 2 + 15 x 4 bytes of framing and 100 bytes of
        values plus the id's length per region, 21 bytes of header and trailer.

    Raises:
        OverflowError: a value does not fit its column (the model service's answer is
            validated against the same limits first, so this does not happen).
    """
    image_id = img_unique_id.encode("utf-8")
    rows = [_REGION_VALUES(region) for _, regions in classes for region in regions]
    count = len(rows)
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for name, kind in COPY_COLUMNS:
        fields += [(f"{name}_len", ">i4"), (name, f"S{len(image_id)}" if kind == "text" else kind)]
    table = np.empty(count, dtype=np.dtype(fields))
    table["n"] = len(COPY_COLUMNS)
    for name, kind in COPY_COLUMNS:
        table[f"{name}_len"] = len(image_id) if kind == "text" else np.dtype(kind).itemsize
    table["class_unique_id"] = np.repeat(
        np.array([class_id for class_id, _ in classes], dtype=np.int64),
        [len(regions) for _, regions in classes],
    )
    table["img_unique_id"] = image_id
    if count:
        for (name, kind), values in zip(COPY_COLUMNS[2:], zip(*rows, strict=True), strict=True):
            table[name] = np.array(values, dtype=kind)
    return _HEADER + table.tobytes() + _TRAILER
