"""Regions stored by `ImageRepository.add_result` (one binary COPY) come back exactly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.models.database import DefectClass, Image, Region
from app.models.model_service import Analysis
from app.services.database.session import create_session_factory, sqlalchemy_url, unit_of_work
from app.services.history.repository import ImageRepository


def _analysis() -> Analysis:
    def region(i: int) -> dict[str, object]:
        return {
            "region_id": i,
            "centroid": {"x": 0.1 + i, "y": 1e-7 * i},
            "bounding_box": {"x": -(2**31), "y": 2**31 - 1, "width": i, "height": 2 * i},
            "area_pixels": 2**60 + i,
            "perimeter": 15.31,
            "major_axis": 1 / 3,
            "minor_axis": 0.0,
            "circularity": 0.75,
            "aspect_ratio": 1e300,
        }

    return Analysis.model_validate(
        {
            "image_shape": {"height": 640, "width": 640},
            "classes": {
                "short": {
                    "class_id": 2,
                    "total_regions": 3,
                    "total_area_pixels": 3 * 2**60 + 6,
                    "regions": [region(i) for i in (1, 2, 3)],
                },
                "empty": {"class_id": 9, "total_regions": 0, "total_area_pixels": 0},
                "pin_hole": {
                    "class_id": 6,
                    "total_regions": 1,
                    "total_area_pixels": 2**60 + 7,
                    "regions": [region(7)],
                },
            },
        }
    )


def test_every_region_value_survives_the_binary_copy(database_url: str) -> None:
    analysis = _analysis()

    async def run() -> tuple[list[DefectClass], list[Region]]:
        engine = create_async_engine(sqlalchemy_url(database_url))
        sessions = create_session_factory(engine)
        try:
            image = Image(
                img_unique_id="copytest0001",
                image_height=640,
                image_width=640,
                processing_time_seconds=0.1,
                timestamp=datetime.now(UTC),
                input_image_path="inputs/copytest0001.jpg",
            )
            async with unit_of_work(sessions) as session:
                await ImageRepository(session).add_result(image, analysis)
            async with sessions() as session:
                classes = list(
                    (
                        await session.execute(
                            select(DefectClass).where(DefectClass.img_unique_id == "copytest0001")
                        )
                    ).scalars()
                )
                regions = list(
                    (
                        await session.execute(
                            select(Region)
                            .where(Region.img_unique_id == "copytest0001")
                            .order_by(Region.region_unique_id)
                        )
                    ).scalars()
                )
            return classes, regions
        finally:
            await engine.dispose()

    classes, regions = asyncio.run(run())
    ids = {c.class_name: c.class_unique_id for c in classes}
    assert sorted(ids) == ["empty", "pin_hole", "short"]
    expected = [(name, r) for name, found in analysis.classes.items() for r in found.regions]
    assert len(regions) == len(expected) == 4
    for row, (name, r) in zip(regions, expected, strict=True):
        assert row.class_unique_id == ids[name]
        assert (row.region_id, row.centroid_x, row.centroid_y) == (
            r.region_id,
            r.centroid.x,
            r.centroid.y,
        )
        assert (row.bbox_x, row.bbox_y, row.bbox_width, row.bbox_height) == (
            r.bounding_box.x,
            r.bounding_box.y,
            r.bounding_box.width,
            r.bounding_box.height,
        )
        assert (
            row.area_pixels,
            row.perimeter,
            row.major_axis,
            row.minor_axis,
            row.circularity,
            row.aspect_ratio,
        ) == (r.area_pixels, r.perimeter, r.major_axis, r.minor_axis, r.circularity, r.aspect_ratio)


def test_the_driver_level_writes_raise_sqlalchemys_errors(database_url: str) -> None:
    """`add_result` writes through psycopg directly; its errors still arrive as the
    session's would: a second store of the same image as `IntegrityError` (the
    duplicate-store path catches it), a lost server as `DBAPIError` with psycopg's
    `OperationalError` inside (the app answers that with 503 `database_unavailable`)."""
    import psycopg
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, IntegrityError

    def image() -> Image:
        return Image(
            img_unique_id="copytest0002",
            image_height=640,
            image_width=640,
            processing_time_seconds=0.1,
            timestamp=datetime.now(UTC),
            input_image_path="inputs/copytest0002.jpg",
        )

    async def run() -> tuple[BaseException | None, BaseException | None]:
        engine = create_async_engine(sqlalchemy_url(database_url))
        sessions = create_session_factory(engine)
        duplicate = lost = None
        try:
            async with unit_of_work(sessions) as session:
                await ImageRepository(session).add_result(image(), _analysis())
            try:
                async with unit_of_work(sessions) as session:
                    await ImageRepository(session).add_result(image(), _analysis())
            except IntegrityError as exc:
                duplicate = exc
            try:
                async with unit_of_work(sessions) as session:
                    pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                    async with engine.connect() as other:
                        await other.execute(text(f"SELECT pg_terminate_backend({int(pid)})"))
                    try:
                        await ImageRepository(session).add_result(image(), _analysis())
                    except DBAPIError as exc:
                        lost = exc
                        raise
            except DBAPIError:
                pass  # the rollback on the dead connection fails too: also a DBAPIError
        finally:
            await engine.dispose()
        return duplicate, lost

    duplicate, lost = asyncio.run(run())
    assert isinstance(duplicate, IntegrityError)
    assert isinstance(duplicate.orig, psycopg.errors.UniqueViolation)
    assert isinstance(lost, DBAPIError)
    assert isinstance(lost.orig, psycopg.OperationalError)
