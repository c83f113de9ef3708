"""`GET /api/export/dataset.zip`: a training set built from the reviewers' verdicts.

The ZIP (docs/dataset.md) holds, per split (`train`, `val`, `test`):

- `images/{split}/{stem}{suffix}`: the stored inputs, byte for byte;
- `masks/{split}/{stem}.png`: a label mask, 8-bit grey, as semantic-segmentation
  trainers read one: 0 background (and false calls), the COCO category id where a
  reviewer confirmed a defect (verdict `real`), 255 "ignore" where nobody has judged
  the region yet or the verdict is `unsure`;
- `annotations/{split}.json`: COCO instance segmentation (RLE). `annotations` holds the
  confirmed defects (`"review": "real"`, `iscrowd` 0) and, as COCO ignore regions
  (`iscrowd` 1, neither positive nor negative for COCO-style training and evaluation),
  the unjudged (`"review": "unreviewed"`) and `unsure` regions; `hard_negatives` holds
  the false calls (`"review": "false_call"`), same fields;
- `manifest.json` (last): every other file's path, SHA-256 and size, the filters and
  options, the agent version, and the counts, so the set can be verified and rebuilt;
- `README.txt`: how to verify it.

The split is decided per board (its serial, else the image) by the lot or the UTC day of
its first inspection, hashed (`split_of`), so one board is never in two splits and the
same data always gives the same split.

Streamed with `stream-zip`: inputs are copied from the storage in chunks, each image's
mask is decoded while its entries are written, and the COCO entries and the file list
wait in spooled temporary files (memory up to `SPOOL_MEMORY_BYTES` each, then disk), so
memory stays bounded however many images.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import PurePosixPath
from typing import IO, Any

import anyio
import numpy as np
from PIL import Image as PILImage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stream_zip import ZIP_AUTO, Method, async_stream_zip

from app.errors import StorageUnavailable
from app.models.database import Region
from app.services.dataset.repository import DatasetImage, DatasetRepository, SplitBy
from app.services.history.coco import RegionBox, mask_rgb, region_pixels, rle_of
from app.services.history.repository import DefectFilters, ImageRepository
from app.services.storage import Storage
from app.utils.ids import download_stem
from app.utils.version import installed_version

SPLITS = ("train", "val", "test")
SPLIT_SALT = "aoi-dataset-split-v1:"
"""Prefix of the hashed split unit: changing it reshuffles every split, so it is part of
the manifest and never changes within a format version."""
MANIFEST_FORMAT = "aoi-dataset/1"
IMAGES_PER_PAGE = 100
SPOOL_MEMORY_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024
IGNORE_LABEL = 255
# Deflate level of the members: JPEG and PNG barely compress, so spend little CPU on them.
ZIP_LEVEL = 1
# Every member's modification time: a fixed one, so the same data gives the same ZIP.
MEMBER_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MEMBER_MODE = stat.S_IFREG | 0o644

VERIFY_NOTE = """\
AOI Inference Agent training set (docs/dataset.md).

Verify it: `aoi-agent dataset verify THIS.zip` checks every file's SHA-256 and size
against manifest.json, and that no file is missing or extra. Without the agent: unzip,
then compare `sha256sum` of each file with its entry in manifest.json "files".

Rebuild it: run the "query" of manifest.json against the same agent (same data, same
agent version); every file's SHA-256 comes out equal (only manifest.json's "created_at"
differs).

Labels: annotations/{split}.json is COCO (RLE). "annotations": confirmed defects
(review "real", iscrowd 0) and ignore regions (review "unreviewed" or "unsure",
iscrowd 1); "hard_negatives": false calls (review "false_call"). masks/{split}/*.png:
0 background, category id = confirmed defect, 255 = ignore.
"""


@dataclass(frozen=True)
class DatasetOptions:
    """How the set is cut.

    Attributes:
        split_by: `lot` (the board context's lot; a first inspection without a lot goes
            by its day) or `day` (UTC day of the board's first inspection).
        ratios: shares of train, val and test, summing to 1.
        model_version: only inspections answered by this model version (exact).
    """

    split_by: SplitBy = "lot"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    model_version: str | None = None


def parse_ratios(text: str) -> tuple[float, float, float]:
    """`"80,10,10"` (any non-negative numbers, at least one above 0) as shares summing
    to 1: (0.8, 0.1, 0.1).

    Raises:
        ValueError: not three comma-separated non-negative numbers, or all zero.
    """
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError("ratios are three numbers train,val,test, e.g. 80,10,10")
    try:
        numbers = [float(p) for p in parts]
    except ValueError as exc:
        raise ValueError("ratios are three numbers train,val,test, e.g. 80,10,10") from exc
    if any(not np.isfinite(n) or n < 0 for n in numbers) or sum(numbers) <= 0:
        raise ValueError("ratios must be non-negative numbers, at least one above 0")
    total = sum(numbers)
    return (numbers[0] / total, numbers[1] / total, numbers[2] / total)


def split_of(unit: str, ratios: Sequence[float]) -> str:
    """The split (`train`, `val` or `test`) of a split unit (`lot:<lot>`, `day:<day>`).

    The unit's SHA-256 (salted with `SPLIT_SALT`), first 8 bytes as a number in [0, 1),
    falls into one of the cumulative `ratios`: the same unit always gets the same split,
    on any machine. With few units the shares are only approximately the ratios.
    """
    digest = hashlib.sha256((SPLIT_SALT + unit).encode("utf-8")).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, ratio in zip(SPLITS, ratios, strict=True):
        cumulative += ratio
        if ratio > 0 and point < cumulative:
            return name
    return next(n for n, r in zip(reversed(SPLITS), reversed(ratios), strict=True) if r > 0)


class _Spool:
    """Bytes written now and streamed later: in memory up to `SPOOL_MEMORY_BYTES`, then in
    a temporary file (deleted on close)."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self.items = 0

    def item(self, value: object) -> None:
        """Append one JSON value, comma-separated from the previous one."""
        self.file.write((b"," if self.items else b"") + _json(value).encode("utf-8"))
        self.items += 1

    @property
    def size(self) -> int:
        return self.file.tell()

    def chunks(self) -> AsyncIterator[bytes]:
        """The bytes written, from the start (then the spool may only be closed)."""
        self.file.seek(0)

        async def read() -> AsyncIterator[bytes]:
            while chunk := self.file.read(READ_CHUNK_BYTES):
                yield chunk

        return read()

    def close(self) -> None:
        self.file.close()


@dataclass
class _SplitParts:
    """One split's COCO file being written: its three lists, spooled."""

    images: _Spool = field(default_factory=_Spool)
    annotations: _Spool = field(default_factory=_Spool)
    hard_negatives: _Spool = field(default_factory=_Spool)

    def spools(self) -> tuple[_Spool, _Spool, _Spool]:
        return (self.images, self.annotations, self.hard_negatives)


@dataclass
class _Run:
    """The state of one export as it streams."""

    options: DatasetOptions
    filters: DefectFilters
    query: str
    categories: dict[str, int]
    parts: dict[str, _SplitParts] = field(
        default_factory=lambda: {name: _SplitParts() for name in SPLITS}
    )
    files: _Spool = field(default_factory=_Spool)
    assembled: list[_Spool] = field(default_factory=list)
    boards: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in SPLITS})
    missing_inputs: int = 0
    annotation_id: int = 0

    def close(self) -> None:
        self.files.close()
        for spool in self.assembled:
            spool.close()
        for part in self.parts.values():
            for spool in part.spools():
                spool.close()


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def filters_record(filters: DefectFilters, options: DatasetOptions) -> dict[str, Any]:
    """The filters and options of an export as the manifest records them (unset ones
    left out)."""
    record = {k: _plain(v) for k, v in asdict(filters).items() if v is not None}
    if options.model_version is not None:
        record["model_version"] = options.model_version
    return record


async def dataset_zip(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    filters: DefectFilters,
    options: DatasetOptions,
    query: str = "",
    limiter: anyio.CapacityLimiter | None = None,
) -> AsyncIterable[bytes]:
    """The dataset ZIP as a stream of bytes (see the module's docstring).

    Args:
        filters: the filters of `/api/query/defects`: the image-level ones (dates, batch,
            image id, review state, disposition, board context) choose the images, all
            of them (class, area too) choose the regions.
        options: split and model-version options.
        query: the query string the export was asked with, recorded in the manifest.
        limiter: the agent's decode limiter (masks are decoded through it).

    Raises:
        StorageUnavailable: (while streaming) the store is gone.
    """
    return async_stream_zip(_members(sessions, storage, filters, options, query, limiter))


async def _members(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    filters: DefectFilters,
    options: DatasetOptions,
    query: str,
    limiter: anyio.CapacityLimiter | None,
) -> AsyncIterator[tuple[str, datetime, int, Method, AsyncIterable[bytes]]]:
    async with sessions() as session:
        # One snapshot: the images, their regions and verdicts all from the same moment.
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        images = ImageRepository(session)
        names = await images.defect_class_names(filters)
        run = _Run(options, filters, query, {n: i for i, n in enumerate(names, start=1)})
        try:
            async for member in _image_members(session, storage, run, limiter):
                yield member
            for split in SPLITS:
                name = f"annotations/{split}.json"
                coco = _coco_spool(run, split)
                yield _member(run, name, coco.size, coco.chunks())
            note = VERIFY_NOTE.encode("utf-8")
            yield _member(run, "README.txt", len(note), _one(note))
            manifest = _manifest_spool(run)
            yield (
                "manifest.json",
                MEMBER_TIME,
                MEMBER_MODE,
                ZIP_AUTO(manifest.size, ZIP_LEVEL),
                manifest.chunks(),
            )
        finally:
            run.close()


def _member(
    run: _Run, name: str, size: int, chunks: AsyncIterator[bytes]
) -> tuple[str, datetime, int, Method, AsyncIterable[bytes]]:
    """A ZIP member whose SHA-256 and size go to the manifest once it has streamed."""

    async def hashed() -> AsyncIterator[bytes]:
        digest, length = hashlib.sha256(), 0
        async for chunk in chunks:
            digest.update(chunk)
            length += len(chunk)
            yield chunk
        run.files.item({"path": name, "sha256": digest.hexdigest(), "size": length})

    return name, MEMBER_TIME, MEMBER_MODE, ZIP_AUTO(size, ZIP_LEVEL), hashed()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _image_members(
    session: AsyncSession, storage: Storage, run: _Run, limiter: anyio.CapacityLimiter | None
) -> AsyncIterator[tuple[str, datetime, int, Method, AsyncIterable[bytes]]]:
    repo, images = DatasetRepository(session), ImageRepository(session)
    after: tuple[datetime, str] | None = None
    number = 0
    while True:
        page = await repo.images_after(
            run.filters, run.options.model_version, run.options.split_by, after, IMAGES_PER_PAGE
        )
        if not page:
            return
        ids = [row.image.img_unique_id for row in page]
        by_image: dict[str, list[tuple[Region, str, str | None]]] = {}
        for region, class_name, _, verdict, _ in await images.regions_of_images(run.filters, ids):
            by_image.setdefault(region.img_unique_id, []).append((region, class_name, verdict))
        for row in page:
            image = row.image
            try:
                key = storage.key_of(image.input_image_path)
                stream = await storage.open_stream(key)
            except (FileNotFoundError, ValueError):
                store = await storage.check()
                if store.state != "ok":
                    raise StorageUnavailable(store.detail or "the store is gone") from None
                run.missing_inputs += 1  # deleted meanwhile (retention): left out
                continue
            number += 1
            split = split_of(row.unit, run.options.ratios)
            stem = download_stem(row.original_filename, image.img_unique_id)
            input_name = f"images/{split}/{stem}{PurePosixPath(key).suffix.lower()}"
            mask_name = f"masks/{split}/{stem}.png"
            yield _member(run, input_name, stream.size, stream.chunks)
            regions = by_image.get(image.img_unique_id, [])
            rles, label_png = await _labels(storage, image, regions, run.categories, limiter)
            yield _member(run, mask_name, len(label_png), _one(label_png))
            _write_entries(run, split, number, row, input_name, mask_name, regions, rles)
        last = page[-1].image
        after = (last.timestamp, last.img_unique_id)


def _write_entries(
    run: _Run,
    split: str,
    number: int,
    row: DatasetImage,
    input_name: str,
    mask_name: str,
    regions: list[tuple[Region, str, str | None]],
    rles: list[dict[str, Any] | None],
) -> None:
    image = row.image
    part = run.parts[split]
    run.boards[split].add(row.board)
    part.images.item(
        {
            "id": number,
            "file_name": input_name,
            "mask_file": mask_name,
            "width": image.image_width,
            "height": image.image_height,
            "date_captured": image.timestamp.isoformat(),
            "img_unique_id": image.img_unique_id,
            "original_filename": row.original_filename,
            "model_version": row.model_version,
            "board": row.board,
            "lot": row.lot,
            "split_unit": row.unit,
        }
    )
    for (region, class_name, verdict), rle in zip(regions, rles, strict=True):
        run.annotation_id += 1
        x, y, w, h = region.bbox_x, region.bbox_y, region.bbox_width, region.bbox_height
        review = verdict or "unreviewed"
        entry = {
            "id": run.annotation_id,
            "image_id": number,
            "category_id": run.categories[class_name],
            "bbox": [x, y, w, h],
            "area": region.area_pixels,
            "iscrowd": 0 if review in ("real", "false_call") else 1,
            "segmentation": rle if rle is not None else [[x, y, x + w, y, x + w, y + h, x, y + h]],
            "segmentation_from": "mask" if rle is not None else "bounding_box",
            "review": review,
            "img_unique_id": image.img_unique_id,
            "region_unique_id": region.region_unique_id,
        }
        (part.hard_negatives if review == "false_call" else part.annotations).item(entry)


async def _labels(
    storage: Storage,
    image: Any,
    regions: list[tuple[Region, str, str | None]],
    categories: dict[str, int],
    limiter: anyio.CapacityLimiter | None,
) -> tuple[list[dict[str, Any] | None], bytes]:
    """(COCO RLE of each region or None, the label mask PNG) of one image."""
    mask: bytes | None = None
    if regions and image.result_image_2_path is not None:
        try:
            mask = await storage.get(storage.key_of(image.result_image_2_path))
        except (OSError, ValueError):
            mask = None
    boxes = [
        RegionBox(r.bbox_x, r.bbox_y, r.bbox_width, r.bbox_height, r.area_pixels)
        for r, _, _ in regions
    ]
    values = [
        categories[name] if verdict == "real" else 0 if verdict == "false_call" else IGNORE_LABEL
        for _, name, verdict in regions
    ]
    return await anyio.to_thread.run_sync(
        label_mask, mask, image.image_height, image.image_width, boxes, values, limiter=limiter
    )


def label_mask(
    mask_png: bytes | None,
    height: int,
    width: int,
    boxes: Sequence[RegionBox],
    values: Sequence[int],
) -> tuple[list[dict[str, Any] | None], bytes]:
    """COCO RLE of each region and the label mask of one image.

    Args:
        mask_png: the stored mask PNG (class colours on black), or None.
        height, width: the image's size, pixels.
        boxes: its regions.
        values: the label of each region's pixels (0: background; 1..254: a category;
            255: ignore).

    Returns:
        (one RLE per region, None where the region is not found in the mask; the label
        mask as PNG bytes, 8-bit grey, `width` x `height`). A region not found in the mask
        labels its whole bounding box as ignore (255) unless its value is 0.
    """
    rgb: np.ndarray[Any, Any] | None = None
    if mask_png is not None:
        try:
            rgb = mask_rgb(io.BytesIO(mask_png), height, width)
        except (OSError, PILImage.DecompressionBombError):
            rgb = None
    label = np.zeros((height, width), dtype=np.uint8)
    canvas = np.zeros((height, width), dtype=np.uint8, order="F")
    rles: list[dict[str, Any] | None] = []
    for box, value in zip(boxes, values, strict=True):
        pixels = region_pixels(rgb, box) if rgb is not None else None
        rles.append(rle_of(canvas, pixels, box))
        if value == 0:
            continue
        window = label[box.y : box.y + box.height, box.x : box.x + box.width]
        if pixels is None:
            window[...] = IGNORE_LABEL
        else:
            window[pixels.astype(bool)] = value
    buffer = io.BytesIO()
    PILImage.fromarray(label, mode="L").save(buffer, "PNG", compress_level=6)
    return rles, buffer.getvalue()


def _coco_spool(run: _Run, split: str) -> _Spool:
    """The COCO file of one split, assembled from its spooled lists into a new spool."""
    part = run.parts[split]
    out = _Spool()
    info = {
        "description": f"AOI Inference Agent training set, {split} split",
        "version": installed_version(),
        "split": split,
    }
    categories = [
        {"id": number, "name": name, "supercategory": "defect"}
        for name, number in run.categories.items()
    ]
    head = f'{{"info":{_json(info)},"licenses":[],"categories":{_json(categories)}'
    out.file.write(head.encode("utf-8"))
    for key, spool in zip(("images", "annotations", "hard_negatives"), part.spools(), strict=True):
        out.file.write(f',"{key}":['.encode())
        spool.file.seek(0)
        while chunk := spool.file.read(READ_CHUNK_BYTES):
            out.file.write(chunk)
        out.file.write(b"]")
    out.file.write(b"}")
    run.assembled.append(out)
    return out


def _manifest_spool(run: _Run) -> _Spool:
    """manifest.json: what the set is, and every other file's SHA-256 and size."""
    counts = {
        split: {
            "images": run.parts[split].images.items,
            "boards": len(run.boards[split]),
            "annotations": run.parts[split].annotations.items,
            "hard_negatives": run.parts[split].hard_negatives.items,
        }
        for split in SPLITS
    }
    head = {
        "format": MANIFEST_FORMAT,
        "agent_version": installed_version(),
        "created_at": datetime.now(UTC).isoformat(),
        "query": "/api/export/dataset.zip" + (f"?{run.query}" if run.query else ""),
        "filters": filters_record(run.filters, run.options),
        "split": {
            "by": run.options.split_by,
            "ratios": dict(zip(SPLITS, run.options.ratios, strict=True)),
            "salt": SPLIT_SALT,
            "rule": "a board (board_serial, else the image) goes by the lot (split_by=lot;"
            " else the UTC day) of its first inspection; split = first 8 bytes of"
            " SHA-256(salt + unit) / 2^64 against the cumulative ratios",
        },
        "categories": [{"id": i, "name": n} for n, i in run.categories.items()],
        "counts": counts,
        "missing_inputs": run.missing_inputs,
    }
    out = _Spool()
    run.assembled.append(out)
    text = _json(head)
    out.file.write(text[:-1].encode("utf-8") + b',"files":[')
    run.files.file.seek(0)
    while chunk := run.files.file.read(READ_CHUNK_BYTES):
        out.file.write(chunk)
    out.file.write(b"]}")
    return out
