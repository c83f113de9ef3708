"""The COCO export: inspected images and their defect regions as a COCO
instance-segmentation file (https://cocodataset.org/#format-data), for FiftyOne, CVAT
or a training script.

Each region's `segmentation` is COCO RLE (pycocotools) of exactly that region's pixels,
recovered from the stored mask PNG: the mask paints each defect class's pixels in its
class colour on black (segformer_service/render.py, docs/model-service-contract.md), and
a region is one 8-connected component of one colour (segformer_service/analysis.py). The
component whose bounding box and pixel count equal the region's stored ones is the
region. A region whose mask is missing or does not match gets the bounding box as its
polygon and `"segmentation_from": "bounding_box"` instead of `"mask"`.

The file is streamed: images are read in keyset pages and each image's mask is decoded
while its annotations are written, so memory holds one page and one mask at a time.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage
from pycocotools import mask as coco_mask
from scipy import ndimage
from skimage.measure import label
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models.database import Image, Region
from app.services.history.repository import DefectFilters, ImageRepository
from app.services.storage import Storage
from app.utils.ids import download_stem
from app.utils.version import installed_version

IMAGES_PER_PAGE = 200
"""Images read (and whose regions are read) per database query."""


@dataclass(frozen=True)
class RegionBox:
    """Where a stored region is: bounding box (top-left x, y and size) and area, pixels."""

    x: int
    y: int
    width: int
    height: int
    area_pixels: int


def region_rles(
    mask_png: Path | BinaryIO, height: int, width: int, regions: Sequence[RegionBox]
) -> list[dict[str, Any] | None]:
    """COCO RLE (`{"size": [h, w], "counts": str}`) of each region's pixels in a mask PNG.

    Args:
        mask_png: the stored mask (class colours on black), `width` x `height` pixels: a
            file, or its bytes as a binary stream.
        regions: the image's regions, any classes.

    Returns:
        One RLE per region, in order; None where no 8-connected single-colour component
        has exactly the region's bounding box and area (or the mask has another size).

    Raises:
        OSError: the PNG cannot be read.
    """
    rgb = mask_rgb(mask_png, height, width)
    if rgb is None:
        return [None] * len(regions)
    canvas = np.zeros((height, width), dtype=np.uint8, order="F")
    return [rle_of(canvas, region_pixels(rgb, box), box) for box in regions]


def mask_rgb(mask_png: Path | BinaryIO, height: int, width: int) -> NDArray[np.uint8] | None:
    """The mask PNG as an (height, width, 3) RGB array; None when it has another size.

    Raises:
        OSError: the PNG cannot be read.
    """
    with PILImage.open(mask_png) as img:
        rgb = np.asarray(img.convert("RGB"))
    return rgb if rgb.shape[:2] == (height, width) else None


def rle_of(
    canvas: NDArray[np.uint8], pixels: NDArray[np.uint8] | None, box: RegionBox
) -> dict[str, Any] | None:
    """COCO RLE of a region's pixels (`region_pixels`) placed in its box on `canvas` (a
    zeroed Fortran-order (h, w) uint8 array, left zeroed); None for None."""
    if pixels is None:
        return None
    height, width = canvas.shape
    window = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
    canvas[window] = pixels
    rle = coco_mask.encode(canvas)
    canvas[window] = 0
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def region_pixels(rgb: NDArray[np.uint8], box: RegionBox) -> NDArray[np.uint8] | None:
    """The region's pixels within its bounding box (box-sized, 1 = region), or None when no
    8-connected single-colour component of the mask has exactly its box and area.

    Looks one pixel beyond the box, so a component that continues outside it (another,
    larger region of the same colour) cannot pass for the region.
    """
    height, width = rgb.shape[:2]
    y0, x0 = max(box.y - 1, 0), max(box.x - 1, 0)
    y1, x1 = min(box.y + box.height + 1, height), min(box.x + box.width + 1, width)
    if box.width <= 0 or box.height <= 0 or y0 >= y1 or x0 >= x1:
        return None
    crop = rgb[y0:y1, x0:x1].astype(np.uint32)
    colours = (crop[..., 0] << 16) | (crop[..., 1] << 8) | crop[..., 2]
    for colour in np.unique(colours[colours != 0]):
        labels = label(colours == colour, connectivity=2)
        for index, where in enumerate(ndimage.find_objects(labels), start=1):
            if where is None:
                continue
            rows, cols = where
            same_box = (
                rows.start + y0 == box.y
                and cols.start + x0 == box.x
                and rows.stop - rows.start == box.height
                and cols.stop - cols.start == box.width
            )
            if not same_box:
                continue
            pixels = labels[where] == index
            if int(pixels.sum()) == box.area_pixels:
                return pixels.astype(np.uint8)
    return None


# The former private name, still imported by app.services.models.matching.
_component = region_pixels


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


async def coco_json(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    filters: DefectFilters,
    limiter: anyio.CapacityLimiter | None = None,
) -> AsyncIterator[bytes]:
    """The COCO file as a stream of UTF-8 chunks.

    `images`: every inspected image matching the image filters (dates, `batch_id`,
    `img_unique_id`), with or without regions (an image with none is a negative
    example). `annotations`: their regions matching all the filters (class, area too).
    `categories`: the classes of those regions, ids 1.. in name order. Both reads run
    in one REPEATABLE READ transaction, so they see the same images. Masks are decoded
    through `limiter` (the agent's decode limiter).
    """
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        repo = ImageRepository(session)
        names = await repo.defect_class_names(filters)
        category_ids = {name: number for number, name in enumerate(names, start=1)}
        # No creation time: the same filters over the same data give the same file.
        info = {
            "description": "AOI Inference Agent defect regions",
            "version": installed_version(),
        }
        categories = [
            {"id": number, "name": name, "supercategory": "defect"}
            for name, number in category_ids.items()
        ]
        yield (
            f'{{"info":{_json(info)},"licenses":[],"categories":{_json(categories)},"images":['
        ).encode()
        first = True
        async for number, image, original_name, disposition in _images(repo, filters):
            entry = {
                "id": number,
                "file_name": f"{download_stem(original_name, image.img_unique_id)}"
                f"/input{Path(image.input_image_path).suffix}",
                "width": image.image_width,
                "height": image.image_height,
                "img_unique_id": image.img_unique_id,
                "original_filename": original_name,
                "date_captured": image.timestamp.isoformat(),
                "disposition": disposition,
            }
            yield (("" if first else ",") + _json(entry)).encode("utf-8")
            first = False
        yield b'],"annotations":['
        first, annotation_id = True, 0
        page: list[tuple[int, Image]] = []
        async for number, image, _, _ in _images(repo, filters):
            page.append((number, image))
            if len(page) < IMAGES_PER_PAGE:
                continue
            async for entry in _annotations(repo, storage, filters, page, category_ids, limiter):
                annotation_id += 1
                entry["id"] = annotation_id
                yield (("" if first else ",") + _json(entry)).encode("utf-8")
                first = False
            page = []
        async for entry in _annotations(repo, storage, filters, page, category_ids, limiter):
            annotation_id += 1
            entry["id"] = annotation_id
            yield (("" if first else ",") + _json(entry)).encode("utf-8")
            first = False
        yield b"]}"


async def _images(
    repo: ImageRepository, filters: DefectFilters
) -> AsyncIterator[tuple[int, Image, str | None, str | None]]:
    """(COCO image id 1.., image, original file name, disposition), newest first, page by
    page."""
    number, after = 0, None
    while True:
        rows = await repo.export_images_after(filters, after, IMAGES_PER_PAGE)
        for image, original_name, disposition in rows:
            number += 1
            yield number, image, original_name, disposition
        if len(rows) < IMAGES_PER_PAGE:
            return
        last = rows[-1][0]
        after = (last.timestamp, last.img_unique_id)


async def _annotations(
    repo: ImageRepository,
    storage: Storage,
    filters: DefectFilters,
    page: list[tuple[int, Image]],
    category_ids: dict[str, int],
    limiter: anyio.CapacityLimiter | None,
) -> AsyncIterator[dict[str, Any]]:
    """The annotations (without `id`) of the matching regions of a page of images."""
    if not page:
        return
    rows = await repo.regions_of_images(filters, [image.img_unique_id for _, image in page])
    by_image: dict[str, list[tuple[Region, str, str | None, str | None]]] = {}
    for region, class_name, _, verdict, reason in rows:
        by_image.setdefault(region.img_unique_id, []).append((region, class_name, verdict, reason))
    for number, image in page:
        regions = by_image.get(image.img_unique_id, [])
        if not regions:
            continue
        boxes = [
            RegionBox(r.bbox_x, r.bbox_y, r.bbox_width, r.bbox_height, r.area_pixels)
            for r, _, _, _ in regions
        ]
        rles = await _image_rles(storage, image, boxes, limiter)
        for (region, class_name, verdict, reason), rle in zip(regions, rles, strict=True):
            x, y, w, h = region.bbox_x, region.bbox_y, region.bbox_width, region.bbox_height
            polygon = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            yield {
                "image_id": number,
                "category_id": category_ids[class_name],
                "bbox": [x, y, w, h],
                "area": region.area_pixels,
                "iscrowd": 0,
                "segmentation": rle if rle is not None else polygon,
                "segmentation_from": "mask" if rle is not None else "bounding_box",
                "img_unique_id": image.img_unique_id,
                "region_id": region.region_id,
                "region_unique_id": region.region_unique_id,
                "verdict": verdict,
                "reason": reason,
            }


async def _image_rles(
    storage: Storage,
    image: Image,
    boxes: list[RegionBox],
    limiter: anyio.CapacityLimiter | None,
) -> list[dict[str, Any] | None]:
    if image.result_image_2_path is None:
        return [None] * len(boxes)
    try:
        mask = io.BytesIO(await storage.get(image.result_image_2_path))
    except (OSError, ValueError):
        return [None] * len(boxes)
    try:
        return await anyio.to_thread.run_sync(
            region_rles, mask, image.image_height, image.image_width, boxes, limiter=limiter
        )
    except (OSError, PILImage.DecompressionBombError):
        return [None] * len(boxes)
