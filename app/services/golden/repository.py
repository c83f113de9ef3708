"""Every query of the golden-board domain: the library (`golden_boards`) and each
inspection's cached registration (`golden_registrations`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import GoldenBoard, GoldenRegistration, Image


@dataclass(frozen=True)
class FolderGolden:
    """A golden image found in GOLDEN_DIR, as it is indexed."""

    golden_id: str
    file_name: str
    image_path: str
    media_type: str
    image_width: int
    image_height: int
    size_bytes: int
    version: str


class GoldenRepository:
    """Queries of the golden-board library, over one session (the caller commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def any(self) -> bool:
        """Whether the library holds any golden board."""
        return (await self.session.scalar(select(GoldenBoard.golden_id).limit(1))) is not None

    async def get(self, golden_id: str) -> GoldenBoard | None:
        """The library row of `golden_id`, or None."""
        return await self.session.get(GoldenBoard, golden_id)

    async def list(self) -> Sequence[GoldenBoard]:
        """Every golden board, by id."""
        return (
            await self.session.scalars(select(GoldenBoard).order_by(GoldenBoard.golden_id))
        ).all()

    async def of_size(
        self, width: int, height: int, product: str | None = None, side: str | None = None
    ) -> Sequence[GoldenBoard]:
        """The golden boards of `width` x `height` pixels (and of `product`/`side` when
        given), by id."""
        query = select(GoldenBoard).where(
            GoldenBoard.image_width == width, GoldenBoard.image_height == height
        )
        if product is not None:
            query = query.where(GoldenBoard.product == product)
        if side is not None:
            query = query.where(GoldenBoard.side == side)
        return (await self.session.scalars(query.order_by(GoldenBoard.golden_id))).all()

    async def by_file_name(self, file_name: str) -> GoldenBoard | None:
        """The golden board whose file name is `file_name` (the first by id), or None."""
        query = (
            select(GoldenBoard)
            .where(GoldenBoard.file_name == file_name)
            .order_by(GoldenBoard.golden_id)
            .limit(1)
        )
        return (await self.session.scalars(query)).first()

    async def save(self, board: GoldenBoard) -> GoldenBoard:
        """Insert or replace the row of `board.golden_id` (its `created_at` is kept) and
        forget the registrations that used it and the "no golden board" ones, which the
        new image may change. Returns the stored row."""
        values = {
            c.key: getattr(board, c.key)
            for c in GoldenBoard.__table__.columns
            if c.key not in ("created_at", "updated_at")
        }
        statement = pg_insert(GoldenBoard).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[GoldenBoard.golden_id],
            set_={
                **{k: statement.excluded[k] for k in values if k != "golden_id"},
                "updated_at": statement.excluded.updated_at,
            },
        )
        await self.session.execute(statement)
        await self.forget_registrations(board.golden_id)
        self.session.expire_all()
        stored = await self.get(board.golden_id)
        assert stored is not None
        return stored

    async def delete(self, golden_id: str) -> GoldenBoard | None:
        """Delete the row of `golden_id` (its registrations go with it); returns it, or
        None when there was none."""
        board = await self.get(golden_id)
        if board is not None:
            await self.session.delete(board)
            await self.session.flush()
        return board

    async def forget_registrations(self, golden_id: str) -> None:
        """Drop the cached registrations against `golden_id` and those that found none."""
        await self.session.execute(
            delete(GoldenRegistration).where(
                (GoldenRegistration.golden_id == golden_id) | GoldenRegistration.golden_id.is_(None)
            )
        )

    async def sync_folder(self, found: Sequence[FolderGolden]) -> None:
        """Make the `folder` rows match GOLDEN_DIR's files: add new ones, update changed
        ones (their registrations are forgotten), delete those whose file is gone. A
        golden id added through the API wins over a folder file of the same stem."""
        existing = {
            b.golden_id: b
            for b in (
                await self.session.scalars(
                    select(GoldenBoard).where(GoldenBoard.source == "folder")
                )
            ).all()
        }
        api_ids = set(
            (
                await self.session.scalars(
                    select(GoldenBoard.golden_id).where(GoldenBoard.source == "api")
                )
            ).all()
        )
        seen = set()
        for item in found:
            if item.golden_id in api_ids:
                continue
            seen.add(item.golden_id)
            row = existing.get(item.golden_id)
            if (
                row is not None
                and row.version == item.version
                and row.image_path == item.image_path
            ):
                continue
            await self.save(GoldenBoard(**item.__dict__, source="folder"))
        for golden_id in set(existing) - seen:
            await self.delete(golden_id)

    async def image(self, img_unique_id: str) -> Image | None:
        """The stored inspection `img_unique_id`, or None."""
        return await self.session.get(Image, img_unique_id)

    async def registration_with_board(
        self, img_unique_id: str
    ) -> tuple[int, int, GoldenRegistration | None, GoldenBoard | None] | None:
        """A stored inspection's width and height (pixels), its cached registration (None:
        not made yet) and golden board (None: none found), in one query; None when no
        stored inspection has this id."""
        query = (
            select(Image.image_width, Image.image_height, GoldenRegistration, GoldenBoard)
            .outerjoin(GoldenRegistration, GoldenRegistration.img_unique_id == Image.img_unique_id)
            .outerjoin(GoldenBoard, GoldenBoard.golden_id == GoldenRegistration.golden_id)
            .where(Image.img_unique_id == img_unique_id)
        )
        row = (await self.session.execute(query)).first()
        return (row[0], row[1], row[2], row[3]) if row is not None else None

    async def save_registration(self, registration: GoldenRegistration) -> None:
        """Insert or replace the registration of `registration.img_unique_id`."""
        values = {
            "img_unique_id": registration.img_unique_id,
            "golden_id": registration.golden_id,
            "dx": registration.dx,
            "dy": registration.dy,
            "score": registration.score,
            "method": registration.method,
        }
        statement = pg_insert(GoldenRegistration).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[GoldenRegistration.img_unique_id],
            set_={k: statement.excluded[k] for k in values if k != "img_unique_id"},
        )
        await self.session.execute(statement)
