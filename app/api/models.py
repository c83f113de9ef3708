"""Model routes: the model versions the agent has answers from, the comparison of two
versions by the reviewers' verdicts, one stored shadow/replay answer, and the verdict on
a region only a shadow/replay answer has (docs/models.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from app.api.deps import LinksDep, SessionDep, SettingsDep
from app.api.params import (
    INT8_MAX,
    PLAIN_TEXT_PATTERN,
    BatchIdFilter,
    ContextFilterDep,
    DateRange,
    EndDate,
    StartDate,
    resolve_dates,
)
from app.api.review import BAD_JSON, ReviewerDep
from app.api.security import AUTH_ERRORS, MethodAccess
from app.errors import VALIDATION_ERROR_RESPONSE, responses
from app.models.model_answers import AnswerOut, AnswerRegionOut
from app.models.model_compare import ModelComparison, ModelList
from app.models.review import VerdictIn
from app.services.models.repository import CompareFilters
from app.services.models.service import (
    AnswerNotFound,
    AnswerRegionMatched,
    AnswerRegionNotFound,
    ModelsService,
)
from app.services.review.reasons import UnknownReason

router = APIRouter(
    tags=["Models"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


def get_models_service(session: SessionDep, settings: SettingsDep) -> ModelsService:
    """Model versions and comparisons over this request's session."""
    return ModelsService(session, reasons=settings.review_reasons)


ModelsServiceDep = Annotated[ModelsService, Depends(get_models_service)]


def _version(side: str) -> object:
    return Query(
        min_length=1,
        max_length=128,
        pattern=PLAIN_TEXT_PATTERN,
        description=f"Model version {side}, exactly as the model service reported it (see"
        " GET /api/models); printable text, at most 128 characters.",
        examples=["1.4.0+3f9a1c2b7d10"],
    )


AnswerId = Annotated[
    int, Path(ge=1, le=INT8_MAX, description="A stored answer's `answer_id`.", examples=[1042])
]
AnswerRegionId = Annotated[
    int,
    Path(ge=1, le=INT8_MAX, description="A stored answer region's id.", examples=[88]),
]


@router.get("/models", response_model=ModelList, summary="Model versions with answers")
async def list_models(service: ModelsServiceDep) -> ModelList:
    """Every model name and version the agent has answers from: primary answers (the
    inspections), shadow and replay answers, first and last seen; newest last seen first.
    `failed_services` lists the shadow/replay model services whose answers failed."""
    return await service.list_models()


@router.get(
    "/models/compare",
    response_model=ModelComparison,
    summary="Compare two model versions per defect class, by the reviewers' verdicts",
)
async def compare_models(
    service: ModelsServiceDep,
    settings: SettingsDep,
    links: LinksDep,
    a: Annotated[str, _version("A")],
    b: Annotated[str, _version("B")],
    date_range: DateRange = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    batch_id: BatchIdFilter = None,
    context: ContextFilterDep = None,
    limit: Annotated[
        int, Query(ge=0, le=500, description="Disagreeing images listed (newest first).")
    ] = 50,
) -> ModelComparison:
    """On the images both versions answered (inspection days, batch and board context as
    filtered): per defect class, the regions both found (same class, mask IoU at least
    MODEL_MATCH_MIN_IOU), found by A only and by B only; per version its confirmed real
    calls, false calls, real defects it missed that the other found, and so its estimated
    precision and relative recall (docs/models.md); and the images they disagree on."""
    start_date, end_date = resolve_dates(date_range, start_date, end_date)
    filters = CompareFilters(start_date, end_date, batch_id, context)
    return await service.compare(a, b, filters, limit, settings.model_match_min_iou, links.viewer)


@router.get(
    "/models/answers/{answer_id}",
    response_model=AnswerOut,
    summary="One stored shadow or replay answer, with its regions",
    responses=responses(AnswerNotFound),
)
async def get_answer(answer_id: AnswerId, service: ModelsServiceDep) -> AnswerOut:
    """The answer's model, status and regions (pixels), each with the primary region it
    matches; the viewer overlays them (`/results/{id}?compare={answer_id}`)."""
    return await service.answer(answer_id)


@router.put(
    "/models/answer-regions/{answer_region_id}/verdict",
    response_model=AnswerRegionOut,
    summary="Set the verdict on a region only a shadow or replay answer has",
    responses={**BAD_JSON, **responses(AnswerRegionNotFound, AnswerRegionMatched, UnknownReason)},
)
async def put_answer_region_verdict(
    answer_region_id: AnswerRegionId,
    change: VerdictIn,
    reviewer: ReviewerDep,
    service: ModelsServiceDep,
) -> AnswerRegionOut:
    """Records a reviewer's verdict (`real`, `false_call`, `unsure`; null withdraws it) on
    a region of a shadow or replay answer that matches no primary region, so that the
    comparison can count what the primary model missed. The change goes into the board's
    review history (`GET /api/images/{id}/review`, with `answer_region_id`) with its
    reason code and comment, as a primary verdict does. A matched region takes its
    primary region's verdict: 409 for one."""
    return await service.set_answer_region_verdict(answer_region_id, change, reviewer)
