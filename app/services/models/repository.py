"""Queries of the model answers (`model_answers`, `answer_regions`): the answers of model
services other than the primary one, and what the comparison reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import (
    AnswerRegion,
    DefectClass,
    Image,
    Inspection,
    ModelAnswer,
    Region,
)


@dataclass(frozen=True)
class StoredInput:
    """What a model answer needs of a stored inspection: its input and its image row.

    Attributes:
        image: the `images` row (size in pixels, primary mask key, `timestamp`).
        input_key: the stored input image's key.
        filename: the client's file name (passed to the model service).
        media_type: the input's media type.
    """

    image: Image
    input_key: str
    filename: str
    media_type: str


@dataclass(frozen=True)
class PrimaryRegion:
    """A region of the primary answer: its id, class and geometry (pixels)."""

    region_unique_id: int
    class_name: str
    x: int
    y: int
    width: int
    height: int
    area_pixels: int


class ModelAnswerRepository:
    """Reads and writes model answers within one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def stored_input(self, img_unique_id: str) -> StoredInput | None:
        """The stored inspection of `img_unique_id`, or None when it has no result (not
        inspected, failed, or deleted)."""
        row = (
            await self.session.execute(
                select(Image, Inspection.original_filename, Inspection.media_type)
                .outerjoin(Inspection, Inspection.img_unique_id == Image.img_unique_id)
                .where(Image.img_unique_id == img_unique_id)
            )
        ).one_or_none()
        if row is None:
            return None
        image, filename, media_type = row
        return StoredInput(
            image=image,
            input_key=image.input_image_path,
            filename=filename or f"{img_unique_id}.png",
            media_type=media_type or "application/octet-stream",
        )

    async def primary_regions(self, img_unique_id: str) -> list[PrimaryRegion]:
        """The primary answer's regions of one image, by class then region id."""
        rows = await self.session.execute(
            select(
                Region.region_unique_id,
                DefectClass.class_name,
                Region.bbox_x,
                Region.bbox_y,
                Region.bbox_width,
                Region.bbox_height,
                Region.area_pixels,
            )
            .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
            .where(Region.img_unique_id == img_unique_id)
            .order_by(DefectClass.class_name, Region.region_id)
        )
        return [PrimaryRegion(*row) for row in rows]

    async def add(self, answer: ModelAnswer, regions: Sequence[dict[str, object]]) -> int:
        """Insert an answer and its regions (column values by name, without `answer_id`);
        returns the new `answer_id`."""
        self.session.add(answer)
        await self.session.flush()
        if regions:
            await self.session.execute(
                insert(AnswerRegion), [{**r, "answer_id": answer.answer_id} for r in regions]
            )
        return answer.answer_id

    async def get(self, answer_id: int) -> ModelAnswer | None:
        """One answer, or None."""
        return await self.session.get(ModelAnswer, answer_id)

    async def regions(self, answer_id: int) -> list[AnswerRegion]:
        """The regions of one answer, by class then region id."""
        rows = await self.session.scalars(
            select(AnswerRegion)
            .where(AnswerRegion.answer_id == answer_id)
            .order_by(AnswerRegion.class_name, AnswerRegion.region_id)
        )
        return list(rows)
