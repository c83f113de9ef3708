"""The review workflow: set and withdraw verdicts and dispositions (each change recorded
with who and when), the review queue and the review figures of the dashboard."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AgentError, ImageNotFound
from app.models.database import ImageDisposition, RegionVerdict, ReviewEvent
from app.models.review import (
    ClassReviewFigures,
    DayReviewFigures,
    Disposition,
    DispositionIn,
    DispositionOut,
    FalseCallReasons,
    ImageReview,
    ImageReviewProgress,
    ReasonCount,
    RegionReview,
    ReviewBatch,
    ReviewBatches,
    ReviewEventOut,
    ReviewFigures,
    ReviewHistory,
    ReviewNext,
    ReviewProgress,
    TotalReviewFigures,
    Verdict,
    VerdictIn,
    VerdictOut,
)
from app.services.cfx.outbox import CfxOutbox
from app.services.history.dashboard import daily_range
from app.services.review.audit_repository import AuditRepository
from app.services.review.reasons import ReasonList
from app.services.review.repository import ReviewFilters, ReviewRepository
from app.services.review.sample import in_audit_sample
from app.services.webhooks.events import WebhookEvents

HISTORY_LIMIT = 500
"""Newest review events returned for one image."""


class RegionNotFound(AgentError):
    """No stored region has this region_unique_id."""

    status_code = 404
    error = "region_not_found"


def region_review(row: RegionVerdict | None) -> RegionReview | None:
    """The API form of a verdict row (None: the region has no verdict)."""
    return None if row is None else RegionReview.model_validate(row, from_attributes=True)


def image_review(row: ImageDisposition | None) -> ImageReview | None:
    """The API form of a disposition row (None: the image has no disposition)."""
    return None if row is None else ImageReview.model_validate(row, from_attributes=True)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class ReviewService:
    """Review operations of one request, over one session (it only flushes; the
    request's unit of work commits)."""

    def __init__(
        self,
        session: AsyncSession,
        cfx: CfxOutbox | None = None,
        audit_rate: float = 0.0,
        reasons: Sequence[str] = (),
        webhooks: WebhookEvents | None = None,
    ) -> None:
        self.session = session
        self.reviews = ReviewRepository(session)
        self.audits = AuditRepository(session)
        # The reason list: the admin's, else REVIEW_REASONS (`reasons`).
        self.reasons = ReasonList(session, reasons)
        # IPC-CFX: verification outcomes written in this request's transaction.
        self.cfx = cfx
        # Webhook events (`region.verdict`, `image.disposition`), in the same transaction.
        self.webhooks = webhooks
        self.audit_rate = audit_rate  # REVIEW_AUDIT_RATE: share of complete boards audited

    async def set_verdict(
        self, region_unique_id: int, change: VerdictIn, reviewer: str
    ) -> VerdictOut:
        """Sets (or, with a null verdict, withdraws) a region's verdict and records the
        change in the history.

        Raises:
            RegionNotFound: no stored region has this id.
            UnknownReason: (422) the reason code is not in the reason list.
        """
        await self.reasons.check(change.reason)
        img_unique_id = await self.reviews.region_image(region_unique_id)
        if img_unique_id is None or not await self.reviews.lock_image(img_unique_id):
            raise RegionNotFound(f"no defect region with id {region_unique_id}")
        before = await self.reviews.verdict(region_unique_id)
        previous = before.verdict if before is not None else None
        row: RegionVerdict | None = None
        if change.verdict is None:
            await self.reviews.remove_verdict(region_unique_id)
        else:
            row = await self.reviews.put_verdict(
                region_unique_id,
                img_unique_id,
                change.verdict,
                reviewer,
                change.comment,
                change.reason,
            )
        await self.reviews.add_event(
            ReviewEvent(
                img_unique_id=img_unique_id,
                region_unique_id=region_unique_id,
                kind="verdict",
                value=change.verdict,
                previous=previous,
                reason=change.reason,
                reviewer=reviewer,
                comment=change.comment,
            )
        )
        if self.cfx is not None:
            await self.cfx.verdict(
                self.session,
                img_unique_id,
                region_unique_id,
                change.verdict,
                reviewer,
                change.comment,
            )
        if self.webhooks is not None:
            await self.webhooks.region_verdict(
                self.session,
                img_unique_id,
                region_unique_id,
                change.verdict,
                reviewer,
                change.comment,
            )
        regions, reviewed = await self.reviews.image_progress(img_unique_id)
        if row is not None and regions and reviewed >= regions:
            await self._sample_for_audit(img_unique_id)
        return VerdictOut(
            region_unique_id=region_unique_id,
            img_unique_id=img_unique_id,
            review=region_review(row),
            previous=cast(Verdict | None, previous),
            progress=ImageReviewProgress(regions=regions, reviewed_regions=reviewed),
        )

    async def _sample_for_audit(self, img_unique_id: str) -> None:
        """The board's first review is complete: queue it for a blind second review when
        it is in the REVIEW_AUDIT_RATE sample (once; later changes keep it queued)."""
        if in_audit_sample(img_unique_id, self.audit_rate):
            await self.audits.queue(img_unique_id)

    async def set_disposition(
        self, img_unique_id: str, change: DispositionIn, reviewer: str
    ) -> DispositionOut:
        """Sets (or, with a null disposition, withdraws) a board's disposition and records
        the change in the history.

        Raises:
            ImageNotFound: no stored inspection result has this id.
        """
        if not await self.reviews.lock_image(img_unique_id):
            raise ImageNotFound(f"no inspection result with id {img_unique_id}")
        before = await self.reviews.disposition(img_unique_id)
        previous = before.disposition if before is not None else None
        row: ImageDisposition | None = None
        if change.disposition is None:
            await self.reviews.remove_disposition(img_unique_id)
        else:
            row = await self.reviews.put_disposition(
                img_unique_id, change.disposition, reviewer, change.comment
            )
        await self.reviews.add_event(
            ReviewEvent(
                img_unique_id=img_unique_id,
                region_unique_id=None,
                kind="disposition",
                value=change.disposition,
                previous=previous,
                reviewer=reviewer,
                comment=change.comment,
            )
        )
        if self.cfx is not None:
            await self.cfx.disposition(
                self.session, img_unique_id, change.disposition, reviewer, change.comment
            )
        if self.webhooks is not None:
            await self.webhooks.image_disposition(
                self.session, img_unique_id, change.disposition, reviewer, change.comment
            )
        return DispositionOut(
            img_unique_id=img_unique_id,
            review=image_review(row),
            previous=cast(Disposition | None, previous),
        )

    async def history(self, img_unique_id: str, viewer: str | None = None) -> ReviewHistory:
        """An image's current disposition, progress and its newest review changes; for a
        `viewer` (the reviewer asking) who audits the board or may audit it, neither the
        disposition nor the changes (the second review is blind).

        Raises:
            ImageNotFound: no stored inspection result has this id.
        """
        if not await self.reviews.image_exists(img_unique_id):
            raise ImageNotFound(f"no inspection result with id {img_unique_id}")
        regions, reviewed = await self.reviews.image_progress(img_unique_id)
        if viewer is not None and await self.audits.blind_to(img_unique_id, viewer):
            return ReviewHistory(
                img_unique_id=img_unique_id,
                progress=ImageReviewProgress(regions=regions, reviewed_regions=reviewed),
                events=[],
            )
        events = await self.reviews.events(img_unique_id, HISTORY_LIMIT)
        return ReviewHistory(
            img_unique_id=img_unique_id,
            disposition=image_review(await self.reviews.disposition(img_unique_id)),
            progress=ImageReviewProgress(regions=regions, reviewed_regions=reviewed),
            events=[ReviewEventOut.model_validate(e, from_attributes=True) for e in events],
        )

    async def recent_batches(self, limit: int) -> ReviewBatches:
        """The `limit` newest batches (id, acceptance time, image count), newest first."""
        rows = await self.reviews.recent_batches(limit)
        return ReviewBatches(batches=[ReviewBatch.model_validate(b) for b in rows])

    async def next_image(
        self, filters: ReviewFilters, after: str | None, viewer_url: Callable[[str], str]
    ) -> ReviewNext:
        """The oldest image matching `filters` with an unreviewed region (the first after
        `after`, wrapping round), and the progress over the same filters.

        `viewer_url(img_unique_id)` builds the viewer link.
        """
        found = await self.reviews.next_unreviewed(filters, after)
        progress = await self.reviews.progress(filters)
        return ReviewNext(
            img_unique_id=found[0] if found else None,
            timestamp=found[1] if found else None,
            viewer_url=viewer_url(found[0]) if found else None,
            progress=ReviewProgress(
                images=progress.images,
                reviewed_images=progress.reviewed_images,
                regions=progress.regions,
                reviewed_regions=progress.reviewed_regions,
            ),
        )

    async def false_call_reasons(self, filters: ReviewFilters) -> FalseCallReasons:
        """The Pareto of false calls by reason over the images inspected in the range
        (default: the last 30 days): per reason code, the regions whose current verdict is
        `false_call` with it, their share of all false calls and the cumulative share, most
        first; the false calls without a reason come last (`reason` null).

        Raises:
            BadDateRange: the start is after the end, or the range is over 731 days.
        """
        start, end, _ = daily_range(filters.start_date, filters.end_date)
        filters = replace(filters, start_date=start, end_date=end)
        counts = await self.reviews.false_calls_by_reason(filters)
        total = sum(counts.values())
        ordered = sorted(counts.items(), key=lambda kv: (kv[0] is None, -kv[1], kv[0] or ""))
        rows: list[ReasonCount] = []
        running = 0
        for reason, n in ordered:
            running += n
            rows.append(
                ReasonCount(
                    reason=reason,
                    false_calls=n,
                    share=n / total,
                    cumulative_share=running / total,
                )
            )
        return FalseCallReasons(
            start_date=start,
            end_date=end,
            class_name=filters.class_name,
            model_version=filters.model_version,
            false_calls=total,
            reasons=rows,
        )

    async def figures(self, filters: ReviewFilters) -> ReviewFigures:
        """False-call rate per class (false calls / reviewed calls; `unsure` counts as
        reviewed), first-pass yield (reviewed images with no `real` verdict / reviewed
        images) and reviewed share (reviewed images / images with regions), per UTC day of
        inspection and over the range. The range defaults to the last 30 days.

        Raises:
            BadDateRange: the start is after the end, or the range is over 731 days.
        """
        start, end, span = daily_range(filters.start_date, filters.end_date)
        filters = replace(filters, start_date=start, end_date=end)
        images = {d: (n, r, p) for d, n, r, p in await self.reviews.images_per_day(filters)}
        calls: dict[date, list[int]] = {}
        by_class: dict[str, list[int]] = {}
        for (
            day,
            name,
            regions,
            real,
            false_call,
            unsure,
        ) in await self.reviews.verdicts_per_day_and_class(filters):
            counts = (regions, real, false_call, unsure)
            for sums in (calls.setdefault(day, [0] * 4), by_class.setdefault(name, [0] * 4)):
                for i, n in enumerate(counts):
                    sums[i] += n
        days = [
            _day_figures(start + timedelta(days=offset), images, calls) for offset in range(span)
        ]
        total = TotalReviewFigures(
            **_figures(
                sum(d.images for d in days),
                sum(d.reviewed_images for d in days),
                sum(d.passed_images for d in days),
                sum(d.regions for d in days),
                sum(d.reviewed_regions for d in days),
                sum(d.false_calls for d in days),
            )
        )
        classes = [
            ClassReviewFigures(
                class_name=name,
                regions=regions,
                reviewed=real + false_call + unsure,
                real=real,
                false_call=false_call,
                unsure=unsure,
                false_call_rate=_rate(false_call, real + false_call + unsure),
            )
            for name, (regions, real, false_call, unsure) in by_class.items()
        ]
        classes.sort(key=lambda c: (-c.reviewed, -c.regions, c.class_name))
        return ReviewFigures(
            start_date=start,
            end_date=end,
            class_name=filters.class_name,
            total=total,
            classes=classes,
            dispositions=await self.reviews.dispositions_count(filters),
            days=days,
        )


def _figures(
    images: int,
    reviewed_images: int,
    passed: int,
    regions: int,
    reviewed_regions: int,
    false_calls: int,
) -> dict[str, Any]:
    return {
        "images": images,
        "reviewed_images": reviewed_images,
        "passed_images": passed,
        "reviewed_share": _rate(reviewed_images, images),
        "first_pass_yield": _rate(passed, reviewed_images),
        "regions": regions,
        "reviewed_regions": reviewed_regions,
        "false_calls": false_calls,
        "false_call_rate": _rate(false_calls, reviewed_regions),
    }


def _day_figures(
    day: date, images: dict[date, tuple[int, int, int]], calls: dict[date, list[int]]
) -> DayReviewFigures:
    n, reviewed, passed = images.get(day, (0, 0, 0))
    regions, real, false_call, unsure = calls.get(day, [0, 0, 0, 0])
    return DayReviewFigures(
        day=day,
        **_figures(n, reviewed, passed, regions, real + false_call + unsure, false_call),
    )
