"""Review routes: a reviewer's verdict per defect region, disposition per board, the
review queue and an image's review history.

The reviewer is who the request authenticates as (the API key's name, or the key a web
user signed in with); with AUTH_MODE off, the name in the `X-Reviewer` header (the web
UI asks for it once).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Header, Query
from fastapi.exceptions import RequestValidationError

from app.api.deps import LinksDep, RuntimeDep, SessionDep, SettingsDep
from app.api.params import (
    IMG_UNIQUE_ID_PATTERN,
    PLAIN_TEXT_PATTERN,
    BatchIdFilter,
    ClassName,
    DateRange,
    EndDate,
    ImgUniqueId,
    ModelVersion,
    RegionUniqueId,
    StartDate,
    resolve_dates,
)
from app.api.security import AUTH_ERRORS, AdminAccess, MethodAccess, PrincipalDep
from app.api.viewer import ViewerDep
from app.errors import VALIDATION_ERROR_RESPONSE, ImageNotFound, responses
from app.models.database import REVIEWER_LENGTH
from app.models.review import (
    DispositionIn,
    DispositionOut,
    ReviewBatches,
    ReviewHistory,
    ReviewNext,
    ReviewReasons,
    ReviewReasonsIn,
    VerdictIn,
    VerdictOut,
)
from app.models.review_audit import (
    AuditBoard,
    AuditNext,
    AuditVerdictIn,
    AuditVerdictOut,
    ReviewerFigures,
)
from app.models.schemas import ErrorBody
from app.services.review.audit import AuditNotAllowed, AuditNotQueued, AuditService
from app.services.review.reasons import UnknownReason
from app.services.review.repository import ReviewFilters
from app.services.review.service import RegionNotFound, ReviewService
from app.services.security.access import NotAuthenticated

router = APIRouter(
    tags=["Review"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


def get_review_service(
    session: SessionDep, runtime: RuntimeDep, settings: SettingsDep
) -> ReviewService:
    """Review operations over this request's session (CFX messages in its transaction)."""
    return ReviewService(
        session,
        runtime.inspections.cfx,
        audit_rate=settings.review_audit_rate,
        reasons=settings.review_reasons,
        webhooks=runtime.inspections.webhooks,
    )


ReviewServiceDep = Annotated[ReviewService, Depends(get_review_service)]


def _reviewer_problem(value: str | None, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("header", "X-Reviewer"), "msg": message, "input": value}]
    )


def reviewer_name(
    principal: PrincipalDep,
    x_reviewer: Annotated[
        str | None,
        Header(
            max_length=3 * 4 * REVIEWER_LENGTH,  # percent-encoded UTF-8 of 64 characters
            description="Who reviews, when AUTH_MODE is off (ignored otherwise: the key's"
            " name is the reviewer): 1-64 printable characters, percent-encoded UTF-8"
            " allowed (`encodeURIComponent`).",
            examples=["line-3-qc"],
        ),
    ] = None,
) -> str:
    """The reviewer of this request: the authenticated key's name, or with auth off the
    `X-Reviewer` header.

    Raises:
        RequestValidationError: (422) auth is off and X-Reviewer is missing or malformed.
        NotAuthenticated: (401) no principal (the route's access check comes first).
    """
    if principal is None:
        raise NotAuthenticated("a review needs an API key or a signed-in web session")
    if principal.via != "open" and principal.key_name:
        return principal.key_name
    if x_reviewer is None:
        raise _reviewer_problem(
            None, "say who reviews: send an X-Reviewer header with your name (1-64 characters)"
        )
    try:
        name = unquote(x_reviewer, errors="strict").strip()
    except UnicodeDecodeError as exc:
        raise _reviewer_problem(x_reviewer, "X-Reviewer is not percent-encoded UTF-8") from exc
    if not 1 <= len(name) <= REVIEWER_LENGTH or not name.isprintable():
        raise _reviewer_problem(
            x_reviewer, f"X-Reviewer must be 1-{REVIEWER_LENGTH} printable characters"
        )
    return name


ReviewerDep = Annotated[str, Depends(reviewer_name)]


BAD_JSON: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON."}
}


@router.put(
    "/regions/{region_unique_id}/verdict",
    response_model=VerdictOut,
    summary="Set a region's verdict (real, false call, unsure)",
    responses={**BAD_JSON, **responses(RegionNotFound, UnknownReason)},
)
async def put_verdict(
    region_unique_id: RegionUniqueId,
    change: VerdictIn,
    reviewer: ReviewerDep,
    service: ReviewServiceDep,
) -> VerdictOut:
    """Records the verdict on one defect region with the reviewer and time (the change is
    kept in the image's review history); `"verdict": null` withdraws it. A `real` or
    `false_call` verdict may carry a `reason` code of the reason list (GET
    /api/review/reasons; 422 `unknown_reason` for another). Answers the new state, the
    verdict before, and how many of the image's regions have one."""
    return await service.set_verdict(region_unique_id, change, reviewer)


@router.put(
    "/images/{img_unique_id}/disposition",
    response_model=DispositionOut,
    summary="Set a board's disposition (pass, repair, scrap)",
    responses={**BAD_JSON, **responses(ImageNotFound)},
)
async def put_disposition(
    img_unique_id: ImgUniqueId,
    change: DispositionIn,
    reviewer: ReviewerDep,
    service: ReviewServiceDep,
) -> DispositionOut:
    """Records what happens to the board with the reviewer and time (kept in its review
    history); `"disposition": null` withdraws it."""
    return await service.set_disposition(img_unique_id, change, reviewer)


@router.get(
    "/images/{img_unique_id}/review",
    response_model=ReviewHistory,
    summary="An image's review: disposition, progress and history",
    responses=responses(ImageNotFound),
)
async def get_review(
    img_unique_id: ImgUniqueId, service: ReviewServiceDep, viewer: ViewerDep
) -> ReviewHistory:
    """The disposition, how many regions have a verdict, and every change of the review
    (who changed what, when, and the value before), newest first (at most 500). For a
    reviewer who audits the board or may audit it, no disposition and no change (the
    second review is blind)."""
    return await service.history(img_unique_id, viewer)


@router.get("/review/next", response_model=ReviewNext, summary="The next image to review")
async def review_next(
    service: ReviewServiceDep,
    links: LinksDep,
    batch_id: BatchIdFilter = None,
    class_name: ClassName = None,
    date_range: DateRange = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    model_version: ModelVersion = None,
    disagreement: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            pattern=PLAIN_TEXT_PATTERN,
            description="Only images on which a shadow or replay answer of this model"
            " version disagrees with the primary answer (docs/models.md): review the"
            " disagreements.",
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            pattern=IMG_UNIQUE_ID_PATTERN,
            description="The image being reviewed now: answer the next one after it (oldest"
            " first, wrapping round), not this one again.",
        ),
    ] = None,
) -> ReviewNext:
    """The oldest inspection (of the batch, class and inspection days asked for) that has
    a defect region without a verdict, with its viewer link in review mode, and the
    progress over the same filters (`null` id: nothing left to review)."""
    start_date, end_date = resolve_dates(date_range, start_date, end_date)
    filters = ReviewFilters(
        start_date, end_date, batch_id, class_name, model_version, disagreement=disagreement
    )
    return await service.next_image(
        filters, after, lambda img_id: links.viewer(img_id) + "?review=1"
    )


@router.get(
    "/review/reasons",
    response_model=ReviewReasons,
    summary="The reason codes a real or false-call verdict may carry",
)
async def review_reasons(service: ReviewServiceDep) -> ReviewReasons:
    """The reason list in key order (`Shift+1` first in review mode): the admin's when
    one is stored (`source` `admin`), else REVIEW_REASONS (`source` `setting`)."""
    return await service.reasons.current()


# The admin's routes: their own router, so that the scope asked is `admin` alone (the
# main router's method rule would ask `write` first, and name that scope in its 403).
admin_router = APIRouter(
    tags=["Review"],
    dependencies=[AdminAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


@admin_router.put(
    "/review/reasons",
    response_model=ReviewReasons,
    summary="Replace the reason list (admin)",
    responses=BAD_JSON,
)
async def put_review_reasons(
    change: ReviewReasonsIn, principal: PrincipalDep, service: ReviewServiceDep
) -> ReviewReasons:
    """Stores the admin's reason list, which replaces REVIEW_REASONS while it is stored;
    `"reasons": []` removes it (REVIEW_REASONS applies again). Verdicts already given keep
    their codes; new verdicts are checked against the new list. Answers the list now in
    force."""
    admin = principal.key_name if principal is not None else None
    return await service.reasons.replace(change.reasons, admin)


@router.get(
    "/review/batches",
    response_model=ReviewBatches,
    summary="The newest batches, for the review queue's batch picker",
)
async def review_batches(
    service: ReviewServiceDep,
    limit: Annotated[int, Query(ge=1, le=500, description="How many batches.")] = 100,
) -> ReviewBatches:
    """The `limit` newest batches (id, when accepted, images accepted), newest first: the
    review queue offers them to pick from instead of a typed batch id."""
    return await service.recent_batches(limit)


# -- reviewer figures and the double-review sample (docs/review.md) --------------------


def get_audit_service(session: SessionDep, settings: SettingsDep) -> AuditService:
    """Reviewer figures and audits over this request's session."""
    return AuditService(
        session, audit_rate=settings.review_audit_rate, reasons=settings.review_reasons
    )


AuditServiceDep = Annotated[AuditService, Depends(get_audit_service)]


@router.get(
    "/review/figures",
    response_model=ReviewerFigures,
    summary="Reviewer speed (seconds per verdict, verdicts per hour) and agreement (kappa)",
)
async def reviewer_figures(
    service: AuditServiceDep,
    viewer: ViewerDep,
    start_date: StartDate = None,
    end_date: EndDate = None,
) -> ReviewerFigures:
    """Over the verdicts given in the range (UTC days; default the last 30, at most 731):
    per reviewer, and per reviewer and day, verdicts, seconds per verdict (median, p90:
    time since the reviewer's previous review action, gaps over `idle_gap_s` left out) and
    verdicts per hour; and Cohen's kappa between first and second (audit) verdicts of the
    boards queued for audit in the range, overall and per reviewer pair; for a reviewer
    who audits boards or may audit them, the kappa leaves those boards out (blind second
    review, docs/review.md)."""
    return await service.figures(start_date, end_date, viewer)


@router.get(
    "/review/audit/next",
    response_model=AuditNext,
    summary="The next board to audit (blind second review)",
)
async def audit_next(
    service: AuditServiceDep,
    reviewer: ReviewerDep,
    links: LinksDep,
    after: Annotated[
        str | None,
        Query(pattern=IMG_UNIQUE_ID_PATTERN, description="The board audited now: not again."),
    ] = None,
) -> AuditNext:
    """The oldest board of the double-review sample that still lacks second verdicts and
    that this reviewer may audit (they gave none of its first verdicts and nobody else
    audits it), with its viewer link in audit mode; `pending` counts such boards."""
    return await service.next_board(
        reviewer, after, lambda img_id: links.viewer(img_id) + "?review=1&audit=1"
    )


@router.get(
    "/review/audit/images/{img_unique_id}",
    response_model=AuditBoard,
    summary="An audited board's regions with the auditor's own verdicts (never the first)",
    responses=responses(ImageNotFound, AuditNotQueued, AuditNotAllowed),
)
async def audit_board(
    img_unique_id: ImgUniqueId, service: AuditServiceDep, reviewer: ReviewerDep
) -> AuditBoard:
    """The board's region ids (model order) with this auditor's second verdicts. The first
    verdicts are never part of the answer (the second review is blind)."""
    return await service.board(img_unique_id, reviewer)


@router.put(
    "/review/audit/regions/{region_unique_id}/verdict",
    response_model=AuditVerdictOut,
    summary="Set a region's second (audit) verdict",
    responses={
        **BAD_JSON,
        **responses(RegionNotFound, AuditNotQueued, AuditNotAllowed, UnknownReason),
    },
)
async def put_audit_verdict(
    region_unique_id: RegionUniqueId,
    change: AuditVerdictIn,
    reviewer: ReviewerDep,
    service: AuditServiceDep,
) -> AuditVerdictOut:
    """Stores the auditor's verdict apart from the first one (which it never replaces);
    `"verdict": null` withdraws it. 403 for a reviewer who gave first verdicts on the
    board, or when another reviewer already audits it."""
    return await service.set_verdict(region_unique_id, change, reviewer)
