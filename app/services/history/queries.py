"""Read side of the API: listings, details, regions, defect queries, batches and stats.

Builds response models from repository rows; `Links` makes the absolute URLs.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AgentError, BatchNotFound, ImageNotFound, StoredFileMissing
from app.models.database import (
    Image,
    Inspection,
    InspectionStatus,
    Region,
    RegionVerdict,
)
from app.models.schemas import (
    AcceptedFile,
    BatchAccepted,
    BatchImageFailed,
    BatchImageSucceeded,
    BatchItem,
    BatchStatus,
    BoundingBoxOut,
    ClassRegions,
    ClassStats,
    DefectClassOut,
    DefectQueryResult,
    DefectRow,
    ImageDetail,
    ImageList,
    ImageRegions,
    ImageReviewState,
    ImageSummary,
    InspectionState,
    PointOut,
    Provenance,
    RegionOut,
    ResultImagesBase64,
    ResultImageUrls,
    SkippedFile,
    Stats,
    UploadResponse,
    WaitingFor,
)
from app.services.boards.repository import BoardRepository
from app.services.history.cursors import (
    DefectKey,
    ImageKey,
    encode_defect_cursor,
    encode_image_cursor,
)
from app.services.history.repository import DefectFilters, ImageFilters, ImageRepository
from app.services.inspection.repository import BatchProgressRow, InspectionRepository
from app.services.inspection.workflow import BatchAcceptance, InspectionOutcome
from app.services.review.audit_repository import AuditRepository
from app.services.review.repository import ReviewRepository
from app.services.review.service import image_review, region_review
from app.services.security.signing import LinkSigner


@dataclass(frozen=True)
class Links:
    """Absolute URLs of the agent's resources, from the request's base URL.

    Downloads use the PRD's root paths; with a `signer` (API keys required) they are
    signed, expiring links that open without a key (a browser, an `<img>`, a line system).
    """

    base_url: str
    signer: LinkSigner | None = None

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def _download_url(self, path: str) -> str:
        return self._url(self.signer.sign(path) if self.signer else path)

    def download(self, img_unique_id: str, kind: str) -> str:
        """`/download/image/{id}/{kind}` (signed when keys are required)."""
        return self._download_url(f"/download/image/{img_unique_id}/{kind}")

    def json(self, img_unique_id: str) -> str:
        """`/download/json/{id}` (signed when keys are required)."""
        return self._download_url(f"/download/json/{img_unique_id}")

    def thumbnail(self, img_unique_id: str) -> str:
        """`/images/{id}/thumbnail` (signed when keys are required)."""
        return self._download_url(f"/images/{img_unique_id}/thumbnail")

    def golden_image(self, golden_id: str) -> str:
        """`/api/golden/{golden_id}/image` (signed when keys are required)."""
        return self._download_url(f"/api/golden/{golden_id}/image")

    def viewer(self, img_unique_id: str) -> str:
        """The web page of one result."""
        return self._url(f"/results/{img_unique_id}")

    def retry(self, img_unique_id: str) -> str:
        """`/api/images/{id}/retry`."""
        return self._url(f"/api/images/{img_unique_id}/retry")

    def batch(self, batch_id: str) -> str:
        """`/api/batches/{batch_id}`."""
        return self._url(f"/api/batches/{batch_id}")

    def batch_retry(self, batch_id: str) -> str:
        """`/api/batches/{batch_id}/retry`."""
        return self._url(f"/api/batches/{batch_id}/retry")

    def batch_zip(self, batch_id: str) -> str:
        """`/download/batch/{batch_id}` (signed when keys are required)."""
        return self._download_url(f"/download/batch/{batch_id}")

    def result_urls(self, img_unique_id: str) -> ResultImageUrls:
        """The three result image URLs."""
        return ResultImageUrls(
            combined=self.download(img_unique_id, "combined"),
            mask=self.download(img_unique_id, "mask"),
            overlay=self.download(img_unique_id, "overlay"),
        )


def batch_accepted(acceptance: BatchAcceptance, links: Links) -> BatchAccepted:
    """The answer to a batch upload: accepted (with repeats), rejected and skipped files,
    and the status and ZIP links (none when nothing was queued)."""
    batch_id = acceptance.batch.batch_id if acceptance.batch is not None else None
    return BatchAccepted(
        batch_id=batch_id,
        status_url=links.batch(batch_id) if batch_id else None,
        zip_url=links.batch_zip(batch_id) if batch_id else None,
        total=len(acceptance.accepted),
        accepted=[
            AcceptedFile(
                filename=i.original_filename,
                img_unique_id=i.img_unique_id,
                repeat_of=i.repeat_of,
            )
            for i in acceptance.accepted
        ],
        rejected=acceptance.rejected,
        skipped_duplicates=[
            SkippedFile(
                filename=s.filename,
                img_unique_id=s.existing.img_unique_id,
                earlier_filename=s.existing.original_filename,
                status=s.existing.status.value,
                batch_id=s.existing.batch_id,
                viewer_url=links.viewer(s.existing.img_unique_id),
            )
            for s in acceptance.skipped
        ],
    )


def upload_response(
    outcome: InspectionOutcome, links: Links, include_base64: bool
) -> UploadResponse:
    """The answer to a successful inspection (single upload or retry)."""
    image = outcome.image
    encoded = None
    if include_base64:
        encoded = ResultImagesBase64(
            **{k: base64.b64encode(v).decode("ascii") for k, v in outcome.result_images.items()}
        )
    return UploadResponse(
        img_unique_id=image.img_unique_id,
        timestamp=image.timestamp,
        processing_time_seconds=image.processing_time_seconds,
        total_defects=outcome.total_defects,
        defect_classes=outcome.defect_classes,
        images=links.result_urls(image.img_unique_id),
        input_url=links.download(image.img_unique_id, "input"),
        json_url=links.json(image.img_unique_id),
        viewer_url=links.viewer(image.img_unique_id),
        result=outcome.analysis,
        images_base64=encoded,
        model_service_seconds=outcome.model_service_seconds,
        agent_total_seconds=outcome.total_seconds,
        input_sha256=outcome.input_sha256,
        repeat_of=outcome.repeat_of,
        skipped_duplicate=outcome.skipped_duplicate,
        context=outcome.context,
    )


def region_out(region: Region, verdict: RegionVerdict | None = None) -> dict[str, Any]:
    """The API form of a region row, with its verdict row if it has one."""
    return {
        "region_unique_id": region.region_unique_id,
        "region_id": region.region_id,
        "centroid": PointOut(x=region.centroid_x, y=region.centroid_y),
        "bounding_box": BoundingBoxOut(
            x=region.bbox_x, y=region.bbox_y, width=region.bbox_width, height=region.bbox_height
        ),
        "area_pixels": region.area_pixels,
        "perimeter": region.perimeter,
        "major_axis": region.major_axis,
        "minor_axis": region.minor_axis,
        "circularity": region.circularity,
        "aspect_ratio": region.aspect_ratio,
        "review": region_review(verdict),
    }


def batch_item(
    inspection: Inspection | BatchProgressRow,
    classes: dict[str, int] | None,
    links: Links,
    processing_time_seconds: float | None = None,
) -> BatchItem:
    """The API form of one batch image; `processing_time_seconds` is the model service's
    inference time of its stored result, if any.

    Built without validation (`model_construct`): every value comes from the ledger's typed
    columns, and a batch's progress, polled while it runs, builds one item per image.
    """
    succeeded = inspection.status == InspectionStatus.SUCCEEDED
    failed = inspection.status == InspectionStatus.FAILED
    waiting = _waiting(inspection)
    return BatchItem.model_construct(
        waiting_for=_waiting_for(inspection),
        img_unique_id=inspection.img_unique_id,
        filename=inspection.original_filename,
        status=inspection.status.value,
        attempts=inspection.attempts,
        error=inspection.last_error if failed or waiting else None,
        next_attempt_at=inspection.next_attempt_at if waiting else None,
        total_defects=sum((classes or {}).values()) if succeeded else None,
        defect_classes=(classes or {}) if succeeded else None,
        processing_time_seconds=processing_time_seconds,
        agent_total_seconds=inspection.total_seconds if succeeded else None,
        viewer_url=links.viewer(inspection.img_unique_id),
        overlay_url=links.download(inspection.img_unique_id, "overlay") if succeeded else None,
        retry_url=links.retry(inspection.img_unique_id) if failed else None,
        repeat_of=inspection.repeat_of,
    )


def _waiting(inspection: Inspection | BatchProgressRow) -> bool:
    """A batch image waiting for the model service or the store to come back."""
    return inspection.status == InspectionStatus.PENDING and inspection.next_attempt_at is not None


def _waiting_for(inspection: Inspection | BatchProgressRow) -> WaitingFor | None:
    """What a waiting batch image waits for (None when it is not waiting)."""
    if not _waiting(inspection):
        return None
    return "storage" if inspection.waiting_for == "storage" else "model_service"


def inspection_state(inspection: Inspection, links: Links) -> InspectionState:
    """The API form of a ledger row with no stored result (pending, processing, failed)."""
    failed = inspection.status == InspectionStatus.FAILED
    return InspectionState(
        status=inspection.status.value,
        img_unique_id=inspection.img_unique_id,
        timestamp=inspection.created_at,
        updated_at=inspection.updated_at,
        original_filename=inspection.original_filename,
        batch_id=inspection.batch_id,
        attempts=inspection.attempts,
        error=inspection.last_error if failed or _waiting(inspection) else None,
        error_status_code=inspection.error_status_code if failed else None,
        next_attempt_at=inspection.next_attempt_at if _waiting(inspection) else None,
        waiting_for=_waiting_for(inspection),
        input_url=links.download(inspection.img_unique_id, "input"),
        retry_url=links.retry(inspection.img_unique_id) if failed else None,
    )


class QueryService:
    """Read-only queries of one request, over one session."""

    def __init__(self, session: AsyncSession, links: Links) -> None:
        self.images = ImageRepository(session)
        self.inspections = InspectionRepository(session)
        self.reviews = ReviewRepository(session)
        self.audits = AuditRepository(session)
        self.boards = BoardRepository(session)
        self.links = links

    async def _blind(self, img_unique_id: str, viewer: str | None) -> bool:
        """Whether `viewer` (the reviewer asking; None: unknown) must not see the board's
        first review: they audit it, or may audit it (docs/review.md, double review)."""
        return viewer is not None and await self.audits.blind_to(img_unique_id, viewer)

    def _summary(
        self,
        image: Image,
        classes: dict[str, int] | None,
        batch_id: str | None,
        filename: str | None,
    ) -> dict[str, Any]:
        counts = classes or {}
        return {
            "img_unique_id": image.img_unique_id,
            "timestamp": image.timestamp,
            "image_height": image.image_height,
            "image_width": image.image_width,
            "processing_time_seconds": image.processing_time_seconds,
            "total_defects": sum(counts.values()),
            "defect_classes": counts,
            "input_image_path": image.input_image_path,
            "batch_id": batch_id,
            "original_filename": filename,
            "thumbnail_url": self.links.thumbnail(image.img_unique_id),
            "viewer_url": self.links.viewer(image.img_unique_id),
        }

    async def list_images(
        self,
        filters: ImageFilters,
        page: int,
        limit: int,
        status: InspectionStatus = InspectionStatus.SUCCEEDED,
        after: ImageKey | None = None,
        viewer: str | None = None,
    ) -> ImageList:
        """A page of images of one status, newest first: page `page` (1-based, OFFSET) or,
        with `after` (a decoded cursor), the `limit` rows after that key; `next_cursor`
        names the last row when more follow.

        `succeeded`: stored inspections with their defects (every filter applies).
        `failed`, `pending`, `processing`: ledger rows with their error and retry URL
        (dates filter the acceptance time; `batch_id` applies; class and defect filters
        cannot match an image with no result and are ignored).

        A board whose first review is hidden from `viewer` (its auditor) shows as
        unreviewed, with no false calls and no disposition.
        """
        offset = 0 if after is not None else (page - 1) * limit
        shown_page = None if after is not None else page
        if status != InspectionStatus.SUCCEEDED:
            total, exact = await self.inspections.total_by_status(status, filters)
            rows = await self.inspections.page_by_status(status, filters, offset, limit + 1, after)
            last = rows[limit - 1] if len(rows) > limit else None
            return ImageList(
                total=total,
                total_is_exact=exact,
                page=shown_page,
                limit=limit,
                status=status.value,
                next_cursor=encode_image_cursor(
                    status.value, ImageKey(last.created_at, last.img_unique_id)
                )
                if last is not None
                else None,
                images=[inspection_state(row, self.links) for row in rows[:limit]],
            )
        (total, exact), found = await self.images.list_page(filters, offset, limit + 1, after)
        last_shown = found[limit - 1][0] if len(found) > limit else None
        shown = found[:limit]
        reviews = await self._review_states(shown)
        if viewer is not None and reviews:
            for img_id in await self.audits.blind_among(reviews, viewer):
                reviews[img_id] = ImageReviewState(
                    state="unreviewed",
                    regions=reviews[img_id].regions,
                    reviewed_regions=0,
                    false_calls=0,
                )
        return ImageList(
            total=total,
            total_is_exact=exact,
            page=shown_page,
            limit=limit,
            next_cursor=encode_image_cursor(
                status.value, ImageKey(last_shown.timestamp, last_shown.img_unique_id)
            )
            if last_shown is not None
            else None,
            images=[
                ImageSummary(**self._summary(*row), review=reviews[row[0].img_unique_id])
                for row in shown
            ],
        )

    async def _review_states(self, rows: list[tuple[Any, ...]]) -> dict[str, ImageReviewState]:
        """The review state of each listed image (rows as `ImageRepository.page` gives
        them: its regions are the sum of its class counts), from the trigger-kept
        `review_boards` rows in one indexed query."""
        boards = await self.reviews.board_states([row[0].img_unique_id for row in rows])
        states: dict[str, ImageReviewState] = {}
        for image, classes, *_ in rows:
            img_id = image.img_unique_id
            regions = sum((classes or {}).values())
            board = boards.get(img_id)
            reviewed = board.reviewed if board else 0
            states[img_id] = ImageReviewState(
                state=None if regions == 0 else "reviewed" if reviewed >= regions else "unreviewed",
                regions=regions,
                reviewed_regions=reviewed,
                false_calls=board.false_calls if board else 0,
                disposition=board.disposition if board else None,
            )
        return states

    async def image_or_inspection(
        self, img_unique_id: str, viewer: str | None = None
    ) -> ImageDetail | InspectionState:
        """A stored inspection's detail, or, for an image with no result (pending,
        processing, failed), where it stands, its error and retry URL. The disposition is
        null for a `viewer` who audits the board or may audit it (as in `image_regions`).

        Raises:
            ImageNotFound: no such image at all.
        """
        inspection = await self.inspections.get(img_unique_id)
        if inspection is not None and inspection.status != InspectionStatus.SUCCEEDED:
            return inspection_state(inspection, self.links)
        return await self.image_detail(img_unique_id, viewer)

    async def image_detail(self, img_unique_id: str, viewer: str | None = None) -> ImageDetail:
        """One stored image with classes and URLs (the disposition withheld from a
        `viewer` the board's first review is hidden from, as in `image_regions`).

        Raises:
            ImageNotFound: no stored result with this id.
        """
        image = await self.images.get(img_unique_id)
        if image is None:
            raise ImageNotFound(f"no inspection result with id {img_unique_id}")
        inspection = await self.inspections.get(img_unique_id)
        classes = sorted(image.classes, key=lambda c: (c.class_id, c.class_name))
        counts = {c.class_name: c.total_regions for c in classes}
        return ImageDetail(
            **self._summary(
                image,
                counts,
                inspection.batch_id if inspection else None,
                inspection.original_filename if inspection else None,
            ),
            result_image_1_path=image.result_image_1_path,
            result_image_2_path=image.result_image_2_path,
            result_image_3_path=image.result_image_3_path,
            classes=[DefectClassOut.model_validate(c, from_attributes=True) for c in classes],
            images=self.links.result_urls(img_unique_id),
            input_url=self.links.download(img_unique_id, "input"),
            json_url=self.links.json(img_unique_id),
            input_sha256=inspection.input_sha256 if inspection else None,
            repeat_of=inspection.repeat_of if inspection else None,
            provenance=Provenance(
                model_service_url=inspection.model_service_url,
                model_name=inspection.model_name,
                model_version=inspection.model_version,
                agent_version=inspection.agent_version,
            )
            if inspection
            else Provenance(),
            disposition=None
            if await self._blind(img_unique_id, viewer)
            else image_review(await self.reviews.disposition(img_unique_id)),
            context=await self.boards.context(img_unique_id),
        )

    async def image_classes(self, img_unique_id: str) -> list[DefectClassOut]:
        """The defect classes of a stored image.

        Raises:
            ImageNotFound: no stored result with this id.
        """
        return (await self.image_detail(img_unique_id)).classes

    async def image_regions(self, img_unique_id: str, viewer: str | None = None) -> ImageRegions:
        """All regions of a stored image grouped by class, with their verdicts, unless
        `viewer` (the reviewer asking) audits the board or may audit it: then every
        `review` is null (the second review is blind, in audit mode or not).

        Raises:
            ImageNotFound: no stored result with this id.
        """
        image = await self.images.get(img_unique_id)
        if image is None:
            raise ImageNotFound(f"no inspection result with id {img_unique_id}")
        classes = await self.images.classes_with_regions(img_unique_id)
        verdicts = (
            {}
            if await self._blind(img_unique_id, viewer)
            else await self.reviews.verdicts_of_image(img_unique_id)
        )
        groups = [
            ClassRegions(
                class_name=c.class_name,
                class_id=c.class_id,
                total_regions=c.total_regions,
                total_area_pixels=c.total_area_pixels,
                regions=[
                    RegionOut(**region_out(r, verdicts.get(r.region_unique_id))) for r in c.regions
                ],
            )
            for c in classes
        ]
        return ImageRegions(
            img_unique_id=img_unique_id,
            image_height=image.image_height,
            image_width=image.image_width,
            total_regions=sum(g.total_regions for g in groups),
            classes=groups,
        )

    async def query_defects(
        self,
        filters: DefectFilters,
        page: int,
        limit: int,
        after: DefectKey | None = None,
        viewer: str | None = None,
    ) -> DefectQueryResult:
        """A page of regions matching `filters`: page `page` (1-based, OFFSET) or, with
        `after` (a decoded cursor), the `limit` rows after that key. The verdicts of the
        boards whose first review is hidden from `viewer` (their auditor) are left out."""
        offset = 0 if after is not None else (page - 1) * limit
        (total, exact), found = await self.images.query_defects(filters, offset, limit + 1, after)
        rows = found[:limit]
        next_cursor = None
        if len(found) > limit:
            region, _, class_id, timestamp = rows[-1]
            next_cursor = encode_defect_cursor(
                DefectKey(
                    timestamp,
                    region.img_unique_id,
                    class_id,
                    region.region_id,
                    region.region_unique_id,
                )
            )
        verdicts = await self.reviews.verdicts_of_regions([row[0].region_unique_id for row in rows])
        if viewer is not None and verdicts:
            boards = {v.img_unique_id for v in verdicts.values()}
            hidden = await self.audits.blind_among(boards, viewer)
            verdicts = {k: v for k, v in verdicts.items() if v.img_unique_id not in hidden}
        return DefectQueryResult(
            total=total,
            total_is_exact=exact,
            page=None if after is not None else page,
            limit=limit,
            next_cursor=next_cursor,
            regions=[
                DefectRow(
                    **region_out(region, verdicts.get(region.region_unique_id)),
                    img_unique_id=region.img_unique_id,
                    timestamp=timestamp,
                    class_name=class_name,
                    class_id=class_id,
                )
                for region, class_name, class_id, timestamp in rows
            ],
        )

    async def batch_status(self, batch_id: str) -> BatchStatus:
        """Progress of a batch.

        Raises:
            BatchNotFound: no batch with this id.
        """
        progress = await self.inspections.batch_progress(batch_id)
        if progress is None:
            raise BatchNotFound(f"no batch with id {batch_id}")
        batch, rows = progress
        items = [
            batch_item(row, row.classes, self.links, row.processing_time_seconds) for row in rows
        ]
        by_status = {s.value: 0 for s in InspectionStatus}
        by_class: dict[str, int] = {}
        for item in items:
            by_status[item.status] += 1
            for name, count in (item.defect_classes or {}).items():
                by_class[name] = by_class.get(name, 0) + count
        pending = by_status["pending"] + by_status["processing"]
        waits = [i.next_attempt_at for i in items if i.next_attempt_at is not None]
        next_attempt_at = min(waits) if waits else None
        on_storage = sum(1 for i in items if i.waiting_for == "storage")
        what = " and ".join(
            name
            for name, count in (("model service", len(waits) - on_storage), ("storage", on_storage))
            if count
        )
        return BatchStatus(
            batch_id=batch_id,
            created_at=batch.created_at,
            total=len(items),
            succeeded=by_status["succeeded"],
            failed=by_status["failed"],
            pending=pending,
            processing=by_status["processing"],
            done=pending == 0,
            rejected_files=batch.rejected_files,
            waiting_for_model_service=len(waits) - on_storage,
            waiting_for_storage=on_storage,
            next_attempt_at=next_attempt_at,
            message=(
                f"waiting for {what}, next attempt at {next_attempt_at:%Y-%m-%d %H:%M:%S}"
                f" UTC ({len(waits)} image{'s' if len(waits) != 1 else ''})"
                if next_attempt_at is not None
                else None
            ),
            retry_url=self.links.batch_retry(batch_id),
            defects_by_class=dict(sorted(by_class.items(), key=lambda kv: -kv[1])),
            zip_url=self.links.batch_zip(batch_id),
            items=items,
        )

    async def batch_results(
        self, batch_id: str, read_analysis: Callable[[Image], Awaitable[dict[str, Any]]]
    ) -> list[BatchImageSucceeded | BatchImageFailed]:
        """Per accepted image of a batch, in upload order: the single-upload answer when it
        succeeded, else its error (`not_finished` while still pending or processing).

        `read_analysis` reads an image's stored analysis JSON.
        """
        rows = await self.inspections.batch_items(batch_id)
        images = await self.images.get_many(
            [i.img_unique_id for i, _ in rows if i.status == InspectionStatus.SUCCEEDED]
        )
        results: list[BatchImageSucceeded | BatchImageFailed] = []
        for inspection, classes in rows:
            img_id = inspection.img_unique_id
            image = images.get(img_id)
            if image is not None:
                try:
                    analysis = await read_analysis(image)
                except StoredFileMissing as exc:
                    results.append(_failed(inspection, exc.error, exc.detail, self.links))
                    continue
                outcome = InspectionOutcome(
                    image=image,
                    analysis=analysis,
                    defect_classes=classes or {},
                    model_service_seconds=inspection.model_service_seconds,
                    total_seconds=inspection.total_seconds,
                )
                answer = upload_response(outcome, self.links, include_base64=False)
                results.append(
                    BatchImageSucceeded(
                        **answer.model_dump(exclude={"success"}),
                        filename=inspection.original_filename,
                    )
                )
            elif inspection.status == InspectionStatus.FAILED:
                error = _error_code(inspection.error_status_code)
                results.append(_failed(inspection, error, inspection.last_error or "", self.links))
            else:
                results.append(
                    _failed(
                        inspection,
                        "not_finished",
                        f"still {inspection.status.value} when the wait ended; follow the"
                        " batch's status_url",
                        self.links,
                    )
                )
        return results

    async def wait_for_batch(self, batch_id: str, timeout_s: float) -> BatchStatus:
        """Poll a batch's status until every image is done or `timeout_s` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            status = await self.batch_status(batch_id)
            if status.done or loop.time() >= deadline:
                return status
            await self.inspections.session.rollback()  # see other transactions' commits
            await asyncio.sleep(0.25)

    async def stats(self) -> Stats:
        """Totals over every inspection."""
        total_images, total_defects, mean_processing = await self.images.totals()
        by_status = await self.inspections.counts_by_status()
        mean_model, mean_total = await self.inspections.timing_means()
        recent = await self.images.page(ImageFilters(), 0, 10)
        failures = await self.inspections.recent_failures(10)
        return Stats(
            total_images=total_images,
            total_defects=total_defects,
            inspections_failed=by_status.get("failed", 0),
            inspections_pending=by_status.get("pending", 0) + by_status.get("processing", 0),
            total_batches=await self.inspections.count_batches(),
            mean_processing_time_seconds=mean_processing,
            mean_model_service_seconds=mean_model,
            mean_agent_total_seconds=mean_total,
            defects_by_class=[
                ClassStats(
                    class_name=name,
                    images=int(images),
                    regions=int(regions or 0),
                    total_area_pixels=int(area or 0),
                )
                for name, images, regions, area in await self.images.defects_by_class()
            ],
            recent_uploads=[ImageSummary(**self._summary(*row)) for row in recent],
            recent_failures=[batch_item(i, None, self.links) for i in failures],
        )


def _error_code(status_code: int | None) -> str:
    """The `error` code a single upload answered with, from the stored HTTP status."""
    codes: dict[int, str] = {}
    for cls in _error_classes(AgentError):  # the first (most basic) error of each status
        codes.setdefault(cls.status_code, cls.error)
    return codes.get(status_code or 500, "internal_error")


def _error_classes(base: type[AgentError]) -> list[type[AgentError]]:
    found: list[type[AgentError]] = []
    for sub in base.__subclasses__():
        found += [sub, *_error_classes(sub)]
    return found


def _failed(inspection: Inspection, error: str, detail: str, links: Links) -> BatchImageFailed:
    status = inspection.status.value
    return BatchImageFailed(
        filename=inspection.original_filename,
        img_unique_id=inspection.img_unique_id,
        status=status if status != "succeeded" else "failed",
        error=error,
        detail=detail,
        retry_url=links.retry(inspection.img_unique_id)
        if inspection.status == InspectionStatus.FAILED
        else None,
    )
