"""Every query of the board domain: the context rows of inspections (`inspection_contexts`)
and the inspections of one board.

A board's inspections are found through `ix_inspection_contexts_board_serial`, so a
timeline costs what the board's own rows cost, not the size of the tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.context import InspectionContext
from app.models.database import (
    BoardContext,
    ImageDisposition,
    Inspection,
    InspectionStatus,
    Region,
    RegionVerdict,
)
from app.services.review.blind import blind_condition, seen_by


@dataclass(frozen=True)
class ContextFilter:
    """The board-context filters of listings, defect queries and exports: exact values
    (None: any). An inspection without context matches no filter."""

    board_serial: str | None = None
    product: str | None = None
    line: str | None = None
    side: str | None = None
    lot: str | None = None

    def is_empty(self) -> bool:
        """Whether no filter is set."""
        return all(v is None for v in astuple(self))


def context_condition(img_unique_id: Any, wanted: ContextFilter) -> ColumnElement[bool]:
    """Rows whose `img_unique_id` column names an inspection with this context.

    A semi-join through `inspection_contexts`: with a serial, product, line or lot the
    matching ids come from that column's index.
    """
    conditions = [
        getattr(BoardContext, name) == value
        for name, value in vars(wanted).items()
        if value is not None
    ]
    return img_unique_id.in_(select(BoardContext.img_unique_id).where(*conditions))


def context_of(row: BoardContext | None) -> InspectionContext | None:
    """The API form of a context row (None for no row)."""
    if row is None:
        return None
    return InspectionContext.model_construct(
        **{name: getattr(row, name) for name in InspectionContext.model_fields}
    )


class BoardRepository:
    """Context rows and board timelines over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add_contexts(self, contexts: Mapping[str, InspectionContext]) -> None:
        """Add one context row per inspection id (flushed with the ledger rows, in the same
        transaction: the unit of work inserts `inspections` first, by foreign key)."""
        self.session.add_all(
            BoardContext(img_unique_id=img_unique_id, **context.model_dump())
            for img_unique_id, context in contexts.items()
        )

    async def context(self, img_unique_id: str) -> InspectionContext | None:
        """The context of one inspection, or None when it was sent without one."""
        return context_of(await self.session.get(BoardContext, img_unique_id))

    async def contexts(self, img_unique_ids: Sequence[str]) -> dict[str, InspectionContext]:
        """The contexts of many inspections by id, in one query; ids without one are absent."""
        if not img_unique_ids:
            return {}
        rows = await self.session.scalars(
            select(BoardContext).where(BoardContext.img_unique_id.in_(img_unique_ids))
        )
        return {row.img_unique_id: ctx for row in rows if (ctx := context_of(row)) is not None}

    async def inspections_of(
        self, board_serial: str, limit: int
    ) -> list[tuple[Inspection, BoardContext]]:
        """The inspections of one board, oldest first (by acceptance time, then id), at most
        `limit` of them."""
        stmt = (
            select(Inspection, BoardContext)
            .join(BoardContext, BoardContext.img_unique_id == Inspection.img_unique_id)
            .where(BoardContext.board_serial == board_serial)
            .order_by(Inspection.created_at, Inspection.img_unique_id)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]


class YieldRepository:
    """The rows first-pass and re-inspection yield are computed from, over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def board_inspections(
        self, start: datetime, end: datetime, wanted: ContextFilter | None
    ) -> list[tuple[str, str | None, str | None, str, datetime]]:
        """Every inspection with a result of the boards that have one accepted in
        [start, end) (and match `wanted`), all of them, oldest first per board.

        Returns:
            Rows (board_serial, product, line, img_unique_id, accepted at).
        """
        in_range = (
            select(BoardContext.board_serial)
            .join(Inspection, Inspection.img_unique_id == BoardContext.img_unique_id)
            .where(
                Inspection.status == InspectionStatus.SUCCEEDED,
                Inspection.created_at >= start,
                Inspection.created_at < end,
                BoardContext.board_serial.is_not(None),
            )
        )
        if wanted is not None:
            in_range = in_range.where(context_condition(BoardContext.img_unique_id, wanted))
        stmt = (
            select(
                BoardContext.board_serial,
                BoardContext.product,
                BoardContext.line,
                Inspection.img_unique_id,
                Inspection.created_at,
            )
            .join(Inspection, Inspection.img_unique_id == BoardContext.img_unique_id)
            .where(
                Inspection.status == InspectionStatus.SUCCEEDED,
                BoardContext.board_serial.in_(in_range.distinct()),
            )
            .order_by(BoardContext.board_serial, Inspection.created_at, Inspection.img_unique_id)
        )
        return [
            (str(r[0]), r[1], r[2], str(r[3]), r[4])
            for r in (await self.session.execute(stmt)).all()
        ]

    async def context_combinations(
        self, start: datetime, end: datetime, limit: int
    ) -> list[tuple[str | None, str | None, str | None, str | None]]:
        """The distinct (product, line, side, lot) of the inspections accepted in
        [start, end) with any of them set: one pass over the range's inspections (by
        `ix_inspections_status_created_at`'s range), at most `limit` combinations."""
        columns = (BoardContext.product, BoardContext.line, BoardContext.side, BoardContext.lot)
        stmt = (
            select(*columns)
            .join(Inspection, Inspection.img_unique_id == BoardContext.img_unique_id)
            .where(
                Inspection.created_at >= start,
                Inspection.created_at < end,
                or_(*(c.is_not(None) for c in columns)),
            )
            .group_by(*columns)
            .limit(limit)
        )
        return [(r[0], r[1], r[2], r[3]) for r in (await self.session.execute(stmt)).all()]

    async def outcomes(
        self, img_unique_ids: Sequence[str], viewer: str | None = None
    ) -> dict[str, bool]:
        """Pass (True) or fail of each inspection (docs/boards.md#pass-or-fail): its
        disposition when it has one, else whether every region is a `false_call`. An
        inspection whose first review is hidden from `viewer` (they audit it or may audit
        it, app/services/review/blind.py) is judged as unreviewed: no disposition, no
        verdict."""
        if not img_unique_ids:
            return {}
        ids = list(img_unique_ids)
        disposition_rows = await self.session.execute(
            select(ImageDisposition.img_unique_id, ImageDisposition.disposition).where(
                ImageDisposition.img_unique_id.in_(ids),
                *seen_by(ImageDisposition.img_unique_id, viewer),
            )
        )
        hidden = [] if viewer is None else [blind_condition(Region.img_unique_id, viewer)]
        dispositions = {str(r[0]): str(r[1]) for r in disposition_rows.all()}
        open_calls = {
            r[0]
            for r in (
                await self.session.execute(
                    select(Region.img_unique_id)
                    .outerjoin(
                        RegionVerdict, RegionVerdict.region_unique_id == Region.region_unique_id
                    )
                    .where(
                        Region.img_unique_id.in_(ids),
                        or_(
                            RegionVerdict.verdict.is_(None),
                            RegionVerdict.verdict != "false_call",
                            *hidden,
                        ),
                    )
                    .distinct()
                )
            ).all()
        }
        return {
            i: dispositions[i] == "pass" if i in dispositions else i not in open_calls for i in ids
        }
