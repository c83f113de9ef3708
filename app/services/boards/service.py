"""The board timeline: every inspection of one board serial, with its regions, verdicts,
disposition, and pass/fail outcome.

Pass or fail of one inspection (docs/boards.md#pass-or-fail): its disposition decides when
it has one (`pass` → pass, `repair` or `scrap` → fail); without one, it passes when it
found no region or every region has the verdict `false_call`. A board's **first pass** is
its earliest inspection with a result (a failed inference judged nothing); later ones are
re-inspections (IPC-9261's first-pass yield counts units good at the first test, without
rework).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import BoardNotFound
from app.models.boards import (
    BoardInspection,
    BoardOutcome,
    BoardTimeline,
    BoardYield,
    ContextValues,
    YieldFigures,
)
from app.models.database import Inspection, InspectionStatus
from app.models.schemas import ImageRegions
from app.services.boards.repository import (
    BoardRepository,
    ContextFilter,
    YieldRepository,
    context_of,
)
from app.services.history.queries import QueryService
from app.services.review.service import image_review

# The most inspections one timeline shows (a board re-inspected more often is an anomaly).
MAX_TIMELINE = 100


def outcome_of(regions: ImageRegions, disposition: str | None) -> BoardOutcome:
    """Pass or fail of one inspection with a result (see the module's docstring)."""
    if disposition is not None:
        return "pass" if disposition == "pass" else "fail"
    verdicts = [r.review.verdict if r.review else None for c in regions.classes for r in c.regions]
    return "pass" if all(v == "false_call" for v in verdicts) else "fail"


class BoardService:
    """Board reads of one request, over the request's query service (same session)."""

    def __init__(self, queries: QueryService) -> None:
        self.queries = queries
        self.boards: BoardRepository = queries.boards

    async def timeline(self, board_serial: str, viewer: str | None = None) -> BoardTimeline:
        """Every inspection of `board_serial` (at most MAX_TIMELINE), oldest first. An
        inspection whose first review is hidden from `viewer` (the reviewer reading: they
        audit it or may audit it, docs/review.md) shows no verdict and no disposition, and
        its outcome is judged as if it were unreviewed.

        Raises:
            BoardNotFound: no inspection names this serial (404).
        """
        rows = await self.boards.inspections_of(board_serial, MAX_TIMELINE + 1)
        if not rows:
            raise BoardNotFound(f"no inspection of the board {board_serial!r}")
        inspections: list[BoardInspection] = []
        passes = 0
        for inspection, context_row in rows[:MAX_TIMELINE]:
            context = context_of(context_row)
            assert context is not None
            passes += inspection.status == InspectionStatus.SUCCEEDED
            inspections.append(await self._entry(inspection, context, passes, viewer))
        decided = [i.outcome for i in inspections if i.outcome is not None]
        return BoardTimeline(
            board_serial=board_serial,
            first_pass=decided[0] if decided else None,
            latest=decided[-1] if decided else None,
            inspections=inspections,
            truncated=len(rows) > MAX_TIMELINE,
        )

    async def _entry(
        self, inspection: Inspection, context: object, passes: int, viewer: str | None
    ) -> BoardInspection:
        links = self.queries.links
        img_unique_id = inspection.img_unique_id
        common = {
            "img_unique_id": img_unique_id,
            "timestamp": inspection.created_at,
            "status": inspection.status.value,
            "original_filename": inspection.original_filename,
            "context": context,
            "viewer_url": links.viewer(img_unique_id),
        }
        if inspection.status != InspectionStatus.SUCCEEDED:
            return BoardInspection(
                **common,
                pass_number=None,
                kind=None,
                outcome=None,
                error=inspection.last_error,
            )
        regions = await self.queries.image_regions(img_unique_id, viewer)
        blind = viewer is not None and await self.queries.audits.blind_to(img_unique_id, viewer)
        disposition = None if blind else await self.queries.reviews.disposition(img_unique_id)
        counts: dict[str, int] = {c.class_name: c.total_regions for c in regions.classes}
        return BoardInspection(
            **common,
            pass_number=passes,
            kind="first_pass" if passes == 1 else "reinspection",
            outcome=outcome_of(regions, disposition.disposition if disposition else None),
            total_defects=sum(counts.values()),
            defect_classes=counts,
            regions=regions,
            disposition=image_review(disposition),
        )


# The longest range `board_yield` computes over: figures come from the tables directly
# (no rollup), so the range bounds the work.
MAX_YIELD_DAYS = 92


def _figures(first: list[bool], latest: list[bool | None]) -> YieldFigures:
    again = [x for x in latest if x is not None]
    return YieldFigures(
        boards=len(first),
        first_pass_passed=sum(first),
        first_pass_yield=sum(first) / len(first) if first else None,
        reinspected_boards=len(again),
        reinspection_passed=sum(again),
        reinspection_yield=sum(again) / len(again) if again else None,
    )


async def board_yield(
    session: AsyncSession,
    start: date,
    end: date,
    wanted: ContextFilter | None,
    viewer: str | None = None,
) -> BoardYield:
    """First-pass yield (a board's first inspection with a result decides it) and
    re-inspection yield (of the boards inspected again, those whose latest inspection
    passed) of the boards first inspected between `start` and `end` (UTC days, inclusive),
    in total, per product and per line. Computed from the tables, not the rollups: the cost
    follows the boards of the range (at most MAX_YIELD_DAYS days). The inspections whose
    first review is hidden from `viewer` (the reviewer reading) are judged as unreviewed.
    """
    repo = YieldRepository(session)
    low = datetime.combine(start, time.min, tzinfo=UTC)
    high = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    rows = await repo.board_inspections(low, high, wanted)
    outcomes = await repo.outcomes([r[3] for r in rows], viewer)
    boards: dict[str, list[tuple[str | None, str | None, str, datetime]]] = {}
    for serial, product, line, img_unique_id, at in rows:
        boards.setdefault(serial, []).append((product, line, img_unique_id, at))
    groups: dict[tuple[str, str], tuple[list[bool], list[bool | None]]] = {}
    for inspections in boards.values():
        product, line, first_id, first_at = inspections[0]
        if not low <= first_at < high:
            continue  # decided before the range (or after it)
        first = outcomes[first_id]
        latest = outcomes[inspections[-1][2]] if len(inspections) > 1 else None
        for key in (("total", ""), ("product", product or "null"), ("line", line or "null")):
            firsts, latests = groups.setdefault(key, ([], []))
            firsts.append(first)
            latests.append(latest)
    empty: tuple[list[bool], list[bool | None]] = ([], [])
    return BoardYield(
        start_date=start,
        end_date=end,
        total=_figures(*groups.get(("total", ""), empty)),
        by_product={k[1]: _figures(*v) for k, v in sorted(groups.items()) if k[0] == "product"},
        by_line={k[1]: _figures(*v) for k, v in sorted(groups.items()) if k[0] == "line"},
    )


# The most values per field `context_values` lists (a picker longer than this is unusable),
# and the most (product, line, side, lot) combinations it reads to find them.
MAX_CONTEXT_VALUES = 200
MAX_CONTEXT_COMBINATIONS = 20_000
PICKER_FIELDS = ("product", "line", "side", "lot")


async def context_values(session: AsyncSession, start: date, end: date) -> ContextValues:
    """The product, line, side and lot values of the inspections accepted between `start`
    and `end` (UTC days, inclusive), each sorted and at most MAX_CONTEXT_VALUES (`truncated`
    says when a field had more, or the range more than MAX_CONTEXT_COMBINATIONS distinct
    combinations). One grouped query over the range's inspections (at most MAX_YIELD_DAYS
    days)."""
    low = datetime.combine(start, time.min, tzinfo=UTC)
    high = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    rows = await YieldRepository(session).context_combinations(
        low, high, MAX_CONTEXT_COMBINATIONS + 1
    )
    values = {
        field: sorted({v for r in rows if (v := r[i]) is not None})
        for i, field in enumerate(PICKER_FIELDS)
    }
    return ContextValues(
        start_date=start,
        end_date=end,
        truncated=len(rows) > MAX_CONTEXT_COMBINATIONS
        or any(len(v) > MAX_CONTEXT_VALUES for v in values.values()),
        **{field: v[:MAX_CONTEXT_VALUES] for field, v in values.items()},
    )
