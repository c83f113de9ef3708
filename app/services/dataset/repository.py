"""Queries of the dataset export: the matching images page by page, each with the board
it shows and the split unit (lot or day) of that board's first inspection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import String, case, cast, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.models.database import BoardContext, Image, Inspection
from app.services.history.repository import DefectFilters, ImageRepository

SplitBy = Literal["lot", "day"]


@dataclass(frozen=True)
class DatasetImage:
    """One image of the dataset with what its split is decided by.

    Attributes:
        board: the board it shows: its `board_serial`, else `image:<img_unique_id>`
            (an image without a serial is a board of its own).
        unit: the split unit of the board's first inspection (see `images_after`).
    """

    image: Image
    original_filename: str | None
    model_version: str | None
    board_serial: str | None
    lot: str | None
    board: str
    unit: str


def _day(timestamp: Any) -> Any:
    """The UTC day of a timestamp column as `YYYY-MM-DD` text."""
    return func.to_char(func.timezone("UTC", timestamp), "YYYY-MM-DD")


class DatasetRepository:
    """The dataset export's reads over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def images_after(
        self,
        filters: DefectFilters,
        model_version: str | None,
        split_by: SplitBy,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[DatasetImage]:
        """Up to `limit` images matching the image-level defect filters (dates, batch,
        image id, review state, disposition, board context) and `model_version` (the
        inspection's model version, exact), oldest first, strictly after the
        (timestamp, img_unique_id) key `after` (keyset paging).

        The split unit of an image is that of its board's *first* inspection (all of the
        board's inspections, not only the exported ones, so a board keeps its split
        whatever the filters): `lot:<lot>` with `split_by="lot"` when that inspection has
        a lot, else `day:<YYYY-MM-DD>` (UTC day it was accepted). One probe of
        `ix_inspection_contexts_board_serial` per image with a serial.
        """
        conditions = await ImageRepository(self.session).defect_conditions(
            filters, image_level_only=True
        )
        if model_version is not None:
            conditions.append(Inspection.model_version == model_version)
        first_ctx, first_image = aliased(BoardContext), aliased(Image)
        own_unit = self._unit(split_by, BoardContext.lot, Image.timestamp)
        first_unit = (
            select(self._unit(split_by, first_ctx.lot, first_image.timestamp))
            .select_from(first_ctx)
            .join(first_image, first_image.img_unique_id == first_ctx.img_unique_id)
            .where(first_ctx.board_serial == BoardContext.board_serial)
            .order_by(first_image.timestamp, first_image.img_unique_id)
            .limit(1)
            .scalar_subquery()
        )
        unit = case((BoardContext.board_serial.is_(None), own_unit), else_=first_unit)
        stmt = (
            select(
                Image,
                Inspection.original_filename,
                Inspection.model_version,
                BoardContext.board_serial,
                BoardContext.lot,
                unit,
            )
            .outerjoin(Inspection, Inspection.img_unique_id == Image.img_unique_id)
            .outerjoin(BoardContext, BoardContext.img_unique_id == Image.img_unique_id)
            .where(*conditions)
            .order_by(Image.timestamp, Image.img_unique_id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(tuple_(Image.timestamp, Image.img_unique_id) > tuple_(*after))
        rows = (await self.session.execute(stmt)).all()
        return [
            DatasetImage(
                image=row[0],
                original_filename=row[1],
                model_version=row[2],
                board_serial=row[3],
                lot=row[4],
                board=row[3] if row[3] is not None else f"image:{row[0].img_unique_id}",
                unit=row[5],
            )
            for row in rows
        ]

    @staticmethod
    def _unit(split_by: SplitBy, lot: Any, timestamp: Any) -> Any:
        day = "day:" + _day(timestamp)
        if split_by == "day":
            return cast(day, String)
        return case((lot.is_(None), day), else_="lot:" + lot)
