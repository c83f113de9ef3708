"""Answers of model services other than the primary one: one call per (image, service).

`run_model_answer` sends a stored input image to a model service (a shadow, or a replay
target), validates the answer exactly as a primary answer is validated
(`ModelServiceClient`), keeps its three PNGs under the store's `answers/` prefix, stores
a `model_answers` row and its `answer_regions`, each matched against the primary regions
of the same image or, unmatched, marked with the primary region it overlaps, and the
`primary_overlaps` (`app.services.models.matching`), in one transaction; the comparison's
kept counts follow by trigger in that transaction (`compare_counts`). Nothing of the
primary inspection is read for writing: its rows, files, exports and line messages stay
as they are.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import (
    BadImage,
    ImageNotFound,
    ModelServiceBadAnswer,
    ModelServiceUnavailable,
    StoredFileMissing,
)
from app.models.database import ANSWER_ROLES, ModelAnswer
from app.models.model_service import Analysis
from app.services.database.session import unit_of_work
from app.services.model_service.client import InferenceResult, ModelServiceClient
from app.services.models.matching import MatchRegion, decode_mask, pair_regions
from app.services.models.repository import ModelAnswerRepository, PrimaryRegion, StoredInput
from app.services.storage import RESULT_FILE_NAMES, Storage
from app.services.storage.base import ResultObject
from app.utils.text import printable
from app.utils.version import without_userinfo

logger = logging.getLogger(__name__)

# Called in the transaction that stores an answer, with its session and new answer_id,
# before the commit: what it writes commits with the answer or not at all (replay).
InTransaction = Callable[[AsyncSession, int], Awaitable[None]]

# The errors of the model service that end in a `failed` answer row (not raised).
SERVICE_ERRORS = (ModelServiceUnavailable, ModelServiceBadAnswer, BadImage)


class ModelServiceClients:
    """One long-lived `ModelServiceClient` per model service URL, made on first use and
    closed together (`aclose`): the shadow services and replay targets of one agent
    process. Each client allows `concurrency` requests in flight."""

    def __init__(self, settings: Settings, concurrency: int | None = None) -> None:
        update: dict[str, Any] = {}
        if concurrency is not None:
            update["segformer_max_concurrency"] = concurrency
        self._settings = settings.model_copy(update=update) if update else settings
        self._clients: dict[str, ModelServiceClient] = {}

    def get(self, url: str) -> ModelServiceClient:
        """The client of `url` (made on first use)."""
        key = url.rstrip("/") + "/"
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = ModelServiceClient(self._settings, key)
        return client

    async def aclose(self) -> None:
        """Close every client's connection pool."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _region_rows(
    analysis: Analysis,
    primary: list[PrimaryRegion],
    primary_mask: bytes | None,
    answer_mask: bytes | None,
    min_iou: float,
) -> tuple[list[dict[str, Any]], list[int]]:
    """The `answer_regions` values of an answer, each with its matched primary region or,
    unmatched, the primary region it overlaps; and the primary regions (`region_unique_id`)
    that match none of the answer's regions but overlap one (docs/models.md).

    Blocking (decodes two PNGs): run it in a worker thread."""
    shape = analysis.image_shape
    ours: list[MatchRegion] = []
    rows: list[dict[str, Any]] = []
    for name, found in analysis.classes.items():
        for region in found.regions:
            box = region.bounding_box
            ours.append(MatchRegion(name, box.x, box.y, box.width, box.height, region.area_pixels))
            confidence = getattr(region, "confidence", None)
            if not _finite_number(confidence):
                confidence = None
            rows.append(
                {
                    "region_id": region.region_id,
                    "class_name": name,
                    "bbox_x": box.x,
                    "bbox_y": box.y,
                    "bbox_width": box.width,
                    "bbox_height": box.height,
                    "area_pixels": region.area_pixels,
                    "centroid_x": region.centroid.x,
                    "centroid_y": region.centroid.y,
                    "confidence": confidence,
                    "matched_region_unique_id": None,
                    "match_iou": None,
                    "overlap_region_unique_id": None,
                }
            )
    if not rows or not primary:
        return rows, []
    theirs = [
        MatchRegion(p.class_name, p.x, p.y, p.width, p.height, p.area_pixels) for p in primary
    ]
    pairing = pair_regions(
        ours,
        decode_mask(answer_mask, shape.height, shape.width),
        theirs,
        decode_mask(primary_mask, shape.height, shape.width),
        min_iou,
    )
    for match in pairing.matches:
        rows[match.a]["matched_region_unique_id"] = primary[match.b].region_unique_id
        rows[match.a]["match_iou"] = match.iou
    for ours_index, theirs_index in pairing.a_overlaps.items():
        rows[ours_index]["overlap_region_unique_id"] = primary[theirs_index].region_unique_id
    return rows, sorted(primary[j].region_unique_id for j in pairing.b_overlaps)


async def run_model_answer(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    img_unique_id: str,
    service_url: str,
    role: str,
    *,
    clients: ModelServiceClients | None = None,
    record_failure: bool = True,
    in_transaction: InTransaction | None = None,
) -> int:
    """Ask the model service at `service_url` for its answer on one stored inspection and
    store it as a `model_answers` row (`role` `shadow` or `replay`) with its regions,
    each matched to the primary region it agrees with (same class, IoU at least
    MODEL_MATCH_MIN_IOU) or marked with the same-class primary region it overlaps
    (docs/models.md). One call per (image, service); calling it again
    stores another answer.

    The stored input is sent with the project's `ModelServiceClient` (its timeouts,
    retries and the same validation of the answer as a primary inspection's: bounds,
    sizes, PNGs). The PNGs go under `answers/YYYYMMDD/{img_unique_id}/{token}/`, the rows
    are written in one transaction; if that fails the PNGs are removed.

    Args:
        settings: the agent's settings (client timeouts, MODEL_MATCH_MIN_IOU).
        sessions: the session factory.
        storage: the store holding the input and the primary mask.
        img_unique_id: a stored (succeeded) inspection.
        service_url: the model service's base URL (credentials are not stored).
        role: `shadow` or `replay`.
        clients: long-lived clients to reuse (one per URL); None: a client is made for
            this call and closed after it.
        record_failure: when the model service fails (unreachable, timeout, a bad
            answer, the input refused), store a `failed` row with the error and return
            its id; False: raise the error instead and store nothing (for a caller that
            will try again).
        in_transaction: awaited with the session and the new `answer_id` inside the
            transaction that stores a succeeded answer, before its commit (a replay marks
            its item done there: both commit, or neither). What it raises rolls the
            answer back and propagates.

    Returns:
        The new `answer_id`.

    Raises:
        ValueError: `role` is not `shadow` or `replay`.
        ImageNotFound: no stored result with this id (not inspected yet, failed, deleted).
        StoredFileMissing: the input image is missing from the store.
        ModelServiceUnavailable, ModelServiceBadAnswer, BadImage: only with
            `record_failure=False`.
        StorageUnavailable, OSError: the PNGs could not be written (nothing stored).
    """
    if role not in ANSWER_ROLES:
        raise ValueError(f"role must be one of {ANSWER_ROLES}, not {role!r}")
    async with sessions() as session:
        repo = ModelAnswerRepository(session)
        stored = await repo.stored_input(img_unique_id)
        if stored is None:
            raise ImageNotFound(f"no inspection result with id {img_unique_id}")
        primary = await repo.primary_regions(img_unique_id)
    try:
        image_bytes = await storage.get(stored.input_key)
    except (OSError, ValueError) as exc:
        raise StoredFileMissing(
            f"the input image of {img_unique_id} is missing from storage ({stored.input_key})"
        ) from exc
    own_clients = clients is None
    pool = clients if clients is not None else ModelServiceClients(settings)
    client = pool.get(service_url)
    shown_url = without_userinfo(client.base_url)
    started = time.perf_counter()
    try:
        result = await client.infer(image_bytes, stored.filename, stored.media_type)
    except SERVICE_ERRORS as exc:
        if not record_failure:
            raise
        return await store_failed_answer(
            sessions, img_unique_id, role, shown_url, exc, time.perf_counter() - started
        )
    finally:
        if own_clients:
            await pool.aclose()
    return await _store_answer(
        settings, sessions, storage, stored, primary, role, shown_url, result, in_transaction
    )


async def store_failed_answer(
    sessions: async_sessionmaker[AsyncSession],
    img_unique_id: str,
    role: str,
    url: str,
    exc: Exception,
    seconds: float,
) -> int:
    """Store a `failed` answer of the model service at `url` (without credentials) for
    one inspection, its error being `exc` (type and message); `seconds` is how long the
    attempt took. Returns the new `answer_id`.

    Raises:
        sqlalchemy.exc.IntegrityError: the inspection's image row is gone.
    """
    error = printable(f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}", 2000)
    async with unit_of_work(sessions) as session:
        answer_id = await ModelAnswerRepository(session).add(
            ModelAnswer(
                img_unique_id=img_unique_id,
                role=role,
                model_service_url=url,
                status="failed",
                error=error,
                model_service_seconds=round(seconds, 6),
            ),
            [],
        )
    logger.warning(
        "model answer failed",
        extra={"img_unique_id": img_unique_id, "role": role, "url": url, "error": error},
    )
    return answer_id


async def _store_answer(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    stored: StoredInput,
    primary: list[PrimaryRegion],
    role: str,
    url: str,
    result: InferenceResult,
    in_transaction: InTransaction | None = None,
) -> int:
    image = stored.image
    img_unique_id = image.img_unique_id
    prefix = f"{storage.answers_prefix(img_unique_id, image.timestamp)}{uuid.uuid4().hex[:16]}/"
    keys = {kind: prefix + name for kind, name in RESULT_FILE_NAMES.items()}
    primary_mask: bytes | None = None
    if primary and image.result_image_2_path:
        with contextlib.suppress(OSError, ValueError):
            primary_mask = await storage.get(image.result_image_2_path)
    rows, primary_overlaps = await anyio.to_thread.run_sync(
        _region_rows,
        result.analysis,
        primary,
        primary_mask,
        result.images.get("mask"),
        settings.model_match_min_iou,
    )
    await storage.put_results(
        [ResultObject(keys[kind], result.images[kind], "image/png", None) for kind in keys]
    )
    try:
        async with unit_of_work(sessions) as session:
            answer_id = await ModelAnswerRepository(session).add(
                ModelAnswer(
                    img_unique_id=img_unique_id,
                    role=role,
                    model_service_url=result.service_url or url,
                    model_name=result.model_name,
                    model_version=result.model_version,
                    status="succeeded",
                    model_service_seconds=round(result.round_trip_seconds, 6),
                    analysis=result.raw_analysis,
                    mask_path=keys["mask"],
                    overlay_path=keys["overlay"],
                    combined_path=keys["combined"],
                    region_count=len(rows),
                    matched_count=sum(1 for r in rows if r["matched_region_unique_id"]),
                    primary_region_count=len(primary),
                    overlapping_count=sum(1 for r in rows if r["overlap_region_unique_id"]),
                    primary_overlapping_count=len(primary_overlaps),
                ),
                rows,
                primary_overlaps,
            )
            if in_transaction is not None:
                await in_transaction(session, answer_id)
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await storage.delete_prefix(prefix)
        raise
    logger.info(
        "model answer stored",
        extra={
            "img_unique_id": img_unique_id,
            "role": role,
            "answer_id": answer_id,
            "regions": len(rows),
            "matched": sum(1 for r in rows if r["matched_region_unique_id"] is not None),
        },
    )
    return answer_id
