"""The model list and the comparison of two model versions by the reviewers' verdicts
(docs/models.md has the definitions and formulas)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AgentError
from app.models.database import AnswerRegion, ReviewEvent
from app.models.model_answers import AnswerOut, AnswerRegionOut
from app.models.model_compare import (
    ClassComparison,
    Disagreement,
    FailedService,
    ModelComparison,
    ModelList,
    ModelVersionOut,
    SideFigures,
)
from app.models.review import VerdictIn
from app.services.models.repository import (
    COUNT_FIELDS,
    CompareFilters,
    ComparisonRepository,
    ModelAnswerRepository,
)
from app.services.review.reasons import ReasonList
from app.services.review.repository import ReviewRepository


class AnswerNotFound(AgentError):
    """No stored model answer has this id."""

    status_code = 404
    error = "answer_not_found"


class AnswerRegionNotFound(AgentError):
    """No stored answer region has this id."""

    status_code = 404
    error = "answer_region_not_found"


class AnswerRegionMatched(AgentError):
    """The answer region matches a primary region: its verdict is that region's."""

    status_code = 409
    error = "answer_region_matched"


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _side(counts: dict[str, int], side: str) -> SideFigures:
    real, false = counts[f"{side}_real"], counts[f"{side}_false"]
    missed = counts[f"{side}_missed"]
    return SideFigures(
        calls=counts["matched"] + counts[f"{side}_only"] + counts[f"{side}_overlapping"],
        confirmed_real=real,
        false_calls=false,
        unsure=counts[f"{side}_unsure"],
        unreviewed=counts[f"{side}_unreviewed"],
        missed_real=missed,
        precision=_ratio(real, real + false),
        relative_recall=_ratio(real, real + missed),
    )


def _class(name: str, counts: dict[str, int]) -> ClassComparison:
    return ClassComparison(
        class_name=name,
        matched=counts["matched"],
        a_only=counts["a_only"],
        b_only=counts["b_only"],
        a_overlapping=counts["a_overlapping"],
        b_overlapping=counts["b_overlapping"],
        a=_side(counts, "a"),
        b=_side(counts, "b"),
    )


class ModelsService:
    """Model versions and their comparison over one session."""

    def __init__(self, session: AsyncSession, reasons: Sequence[str] = ()) -> None:
        self.comparisons = ComparisonRepository(session)
        self.answers = ModelAnswerRepository(session)
        self.reviews = ReviewRepository(session)
        # The reason list: the admin's, else REVIEW_REASONS (`reasons`).
        self.reasons = ReasonList(session, reasons)

    async def list_models(self) -> ModelList:
        """Every model name and version with succeeded answers (primary from the ledger,
        shadow and replay from `model_answers`), newest last seen first; and the model
        services whose answers failed."""
        models = [
            ModelVersionOut(
                model_name=name,
                model_version=version,
                primary_answers=primary,
                shadow_answers=shadow,
                replay_answers=replay,
                first_seen=first,
                last_seen=last,
            )
            for name, version, primary, shadow, replay, first, last in (
                await self.comparisons.versions()
            )
        ]
        failed = [
            FailedService(
                model_service_url=url, failed_answers=n, last_failed_at=at, last_error=error
            )
            for url, n, at, error in await self.comparisons.failed_answers()
        ]
        return ModelList(models=models, failed_services=failed)

    async def compare(
        self,
        a: str,
        b: str,
        filters: CompareFilters,
        limit: int,
        min_iou: float,
        viewer_url: Callable[[str], str],
    ) -> ModelComparison:
        """Versions `a` and `b` on the images both answered (within `filters`): per defect
        class, matched / A only / B only / overlapping (docs/models.md), and per version
        the verdict counts, precision and relative recall; the newest `limit` disagreeing
        images, each with the viewer link `viewer_url(img_unique_id)` plus
        `?compare=<answer ids>` (the non-primary answers, overlaid). `min_iou` is only
        reported (the matches were made when stored)."""
        found = await self.comparisons.compare(a, b, filters, limit)
        totals = dict.fromkeys(COUNT_FIELDS, 0)
        classes = []
        for row in found.classes:
            counts: dict[str, Any] = dict(zip(COUNT_FIELDS, row[1:], strict=True))
            classes.append(_class(row[0], counts))
            for key in COUNT_FIELDS:
                totals[key] += counts[key]
        disagreements = []
        for (
            img_id,
            stamp,
            a_only,
            b_only,
            a_over,
            b_over,
            a_answer,
            b_answer,
        ) in found.disagreements:
            ids = ",".join(str(i) for i in (a_answer, b_answer) if i is not None)
            disagreements.append(
                Disagreement(
                    img_unique_id=img_id,
                    timestamp=stamp,
                    a_only=a_only,
                    b_only=b_only,
                    a_overlapping=a_over,
                    b_overlapping=b_over,
                    a_answer_id=a_answer,
                    b_answer_id=b_answer,
                    viewer_url=f"{viewer_url(img_id)}?compare={ids}",
                )
            )
        return ModelComparison(
            a=a,
            b=b,
            min_iou=min_iou,
            images=found.images,
            classes=classes,
            totals=_class("all", totals),
            disagreeing_images=found.disagreeing_images,
            disagreements=disagreements,
        )

    async def set_answer_region_verdict(
        self, answer_region_id: int, change: VerdictIn, reviewer: str
    ) -> AnswerRegionOut:
        """Set (None: withdraw) the verdict on an unmatched region of a stored answer, and
        record the change in the review history (`review_events`, as a primary region's:
        verdict, previous verdict, reason, reviewer, comment; `answer_region_id` names
        the region, `region_unique_id` is null).

        Raises:
            UnknownReason: (422) the reason code is not in the reason list.
            AnswerRegionNotFound: no such region.
            AnswerRegionMatched: it matches a primary region (judge that one instead).
        """
        await self.reasons.check(change.reason)
        region = await self.answers.region(answer_region_id, for_update=True)
        if region is None:
            raise AnswerRegionNotFound(f"no answer region with id {answer_region_id}")
        if region.matched_region_unique_id is not None:
            raise AnswerRegionMatched(
                f"answer region {answer_region_id} matches primary region"
                f" {region.matched_region_unique_id}: set the verdict on that region"
                f" (PUT /api/regions/{region.matched_region_unique_id}/verdict)"
            )
        answer = await self.answers.get(region.answer_id)
        if answer is None:  # the region's answer row is its foreign key's target
            raise AnswerRegionNotFound(f"no answer region with id {answer_region_id}")
        previous = region.verdict
        await self.answers.set_verdict(region, change.verdict, reviewer, change.reason)
        await self.reviews.add_event(
            ReviewEvent(
                img_unique_id=answer.img_unique_id,
                region_unique_id=None,
                answer_region_id=answer_region_id,
                kind="verdict",
                value=change.verdict,
                previous=previous,
                reason=change.reason,
                reviewer=reviewer,
                comment=change.comment,
            )
        )
        return _region_out(region)

    async def answer(self, answer_id: int) -> AnswerOut:
        """One stored answer with its regions (and the primary region each matches).

        Raises:
            AnswerNotFound: no answer with this id.
        """
        row = await self.answers.get(answer_id)
        if row is None:
            raise AnswerNotFound(f"no model answer with id {answer_id}")
        regions = await self.answers.regions(answer_id)
        return AnswerOut(
            answer_id=row.answer_id,
            img_unique_id=row.img_unique_id,
            role=row.role,
            model_service_url=row.model_service_url,
            model_name=row.model_name,
            model_version=row.model_version,
            status=row.status,
            error=row.error,
            model_service_seconds=row.model_service_seconds,
            created_at=row.created_at,
            regions=[_region_out(r) for r in regions],
        )


def _region_out(r: AnswerRegion) -> AnswerRegionOut:
    return AnswerRegionOut(
        answer_region_id=r.answer_region_id,
        region_id=r.region_id,
        class_name=r.class_name,
        bbox=[r.bbox_x, r.bbox_y, r.bbox_width, r.bbox_height],
        area_pixels=r.area_pixels,
        centroid=[r.centroid_x, r.centroid_y],
        confidence=r.confidence,
        matched_region_unique_id=r.matched_region_unique_id,
        match_iou=r.match_iou,
        verdict=r.verdict,
        reason=r.reason,
    )
