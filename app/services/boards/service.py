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

from app.errors import BoardNotFound
from app.models.boards import BoardInspection, BoardOutcome, BoardTimeline
from app.models.database import Inspection, InspectionStatus
from app.models.schemas import ImageRegions
from app.services.boards.repository import BoardRepository, context_of
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

    async def timeline(self, board_serial: str) -> BoardTimeline:
        """Every inspection of `board_serial` (at most MAX_TIMELINE), oldest first.

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
            inspections.append(await self._entry(inspection, context, passes))
        decided = [i.outcome for i in inspections if i.outcome is not None]
        return BoardTimeline(
            board_serial=board_serial,
            first_pass=decided[0] if decided else None,
            latest=decided[-1] if decided else None,
            inspections=inspections,
            truncated=len(rows) > MAX_TIMELINE,
        )

    async def _entry(self, inspection: Inspection, context: object, passes: int) -> BoardInspection:
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
        regions = await self.queries.image_regions(img_unique_id)
        disposition = await self.queries.reviews.disposition(img_unique_id)
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
