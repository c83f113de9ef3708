"""The review service over a real PostgreSQL: the figures' definitions (per day, per
class, unsure counted as reviewed, empty denominators), the queue's class filter and
wrap-round, and the history of changes. Rows are written directly (the geometry does not
matter here; the API tests cover inspected DeepPCB boards)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.database import DefectClass, Image, Region
from app.models.review import DispositionIn, VerdictIn
from app.services.database.session import create_engine, create_session_factory, unit_of_work
from app.services.history.dashboard import BadDateRange
from app.services.review.repository import ReviewFilters
from app.services.review.service import RegionNotFound, ReviewService

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)


@pytest.fixture
async def session(database_url: str) -> AsyncIterator[AsyncSession]:
    """One session in a transaction rolled back at the end (nothing stays behind)."""
    engine = create_engine(Settings(_env_file=None), database_url)  # type: ignore[call-arg]
    try:
        async with create_session_factory(engine)() as session:
            yield session
            await session.rollback()
    finally:
        await engine.dispose()


async def board(
    session: AsyncSession, img_id: str, day: date, hour: int, classes: dict[str, int]
) -> list[int]:
    """An image of `day` at `hour` with `classes` ({name: regions}); its region ids."""
    image = Image(
        img_unique_id=img_id,
        image_height=100,
        image_width=100,
        processing_time_seconds=0.1,
        timestamp=datetime(day.year, day.month, day.day, hour, tzinfo=UTC),
        input_image_path=f"uploads/{img_id}.png",
    )
    session.add(image)
    await session.flush()
    ids = []
    for class_id, (name, count) in enumerate(classes.items(), start=1):
        group = DefectClass(
            img_unique_id=img_id,
            class_id=class_id,
            class_name=name,
            total_regions=count,
            total_area_pixels=4 * count,
        )
        session.add(group)
        await session.flush()
        for n in range(1, count + 1):
            region = Region(
                class_unique_id=group.class_unique_id,
                img_unique_id=img_id,
                region_id=n,
                centroid_x=1.0,
                centroid_y=1.0,
                bbox_x=0,
                bbox_y=0,
                bbox_width=2,
                bbox_height=2,
                area_pixels=4,
                perimeter=8.0,
                major_axis=2.0,
                minor_axis=2.0,
                circularity=0.8,
                aspect_ratio=1.0,
            )
            session.add(region)
            await session.flush()
            ids.append(region.region_unique_id)
    return ids


async def test_figures_follow_their_definitions(session: AsyncSession) -> None:
    service = ReviewService(session)
    a = await board(session, "20260301_080000_AAAAAA", DAY1, 8, {"short": 2, "spur": 1})
    b = await board(session, "20260301_090000_BBBBBB", DAY1, 9, {"short": 1})
    c = await board(session, "20260302_080000_CCCCCC", DAY2, 8, {"spur": 2})
    await board(session, "20260302_090000_DDDDDD", DAY2, 9, {})  # no call: not counted
    # a: short false, short unsure, spur false → reviewed, no real: passes.
    for region, verdict in zip(a, ("false_call", "unsure", "false_call"), strict=True):
        await service.set_verdict(region, VerdictIn(verdict=verdict), "anna")
    # b: real → reviewed, fails. c: one of two reviewed → not a reviewed image.
    await service.set_verdict(b[0], VerdictIn(verdict="real"), "anna")
    await service.set_verdict(c[0], VerdictIn(verdict="false_call"), "ben")
    await service.set_disposition(
        "20260301_090000_BBBBBB", DispositionIn(disposition="repair"), "anna"
    )

    figures = await service.figures(ReviewFilters(DAY1, DAY2))
    day1, day2 = figures.days
    assert (day1.images, day1.reviewed_images, day1.passed_images) == (2, 2, 1)
    assert day1.first_pass_yield == 0.5
    assert day1.reviewed_share == 1.0
    assert (day1.regions, day1.reviewed_regions, day1.false_calls) == (4, 4, 2)
    assert day1.false_call_rate == 0.5
    assert (day2.images, day2.reviewed_images, day2.passed_images) == (1, 0, 0)
    assert day2.first_pass_yield is None  # nothing reviewed: no yield, not 0 %
    assert day2.false_call_rate == 1.0
    assert figures.total.images == 3
    assert figures.total.reviewed_share == pytest.approx(2 / 3)
    assert figures.total.false_call_rate == pytest.approx(3 / 5)
    by_class = {c.class_name: c for c in figures.classes}
    assert (by_class["short"].reviewed, by_class["short"].false_call) == (3, 1)
    assert by_class["short"].false_call_rate == pytest.approx(1 / 3)
    assert by_class["spur"].false_call_rate == 1.0
    assert by_class["spur"].regions == 3
    assert figures.dispositions == {"repair": 1}

    # The class filter keeps that class's regions: board a is reviewed for `spur` alone.
    spur = await service.figures(ReviewFilters(DAY1, DAY2, class_name="SPUR"))
    assert [c.class_name for c in spur.classes] == ["spur"]
    assert (spur.total.images, spur.total.reviewed_images) == (2, 1)

    with pytest.raises(BadDateRange):
        await service.figures(ReviewFilters(DAY2, DAY1))
    with pytest.raises(BadDateRange):
        await service.figures(ReviewFilters(date(2020, 1, 1), DAY2))


async def test_the_queue_filters_by_class_and_wraps_round(session: AsyncSession) -> None:
    service = ReviewService(session)
    first = await board(session, "20260301_080000_AAAAAA", DAY1, 8, {"short": 1, "spur": 1})
    await board(session, "20260301_090000_BBBBBB", DAY1, 9, {"spur": 1})
    await service.set_verdict(first[0], VerdictIn(verdict="real"), "anna")  # its short

    def viewer(img_id: str) -> str:
        return f"/results/{img_id}?review=1"

    everything = ReviewFilters(DAY1, DAY1)
    assert (await service.next_image(everything, None, viewer)).img_unique_id == (
        "20260301_080000_AAAAAA"
    )
    after_last = await service.next_image(everything, "20260301_090000_BBBBBB", viewer)
    assert after_last.img_unique_id == "20260301_080000_AAAAAA"
    shorts = ReviewFilters(DAY1, DAY1, class_name="short")
    answer = await service.next_image(shorts, None, viewer)
    assert answer.img_unique_id is None  # its only short region has a verdict
    assert (answer.progress.images, answer.progress.reviewed_images) == (1, 1)
    alone = await service.next_image(everything, "20260301_080000_AAAAAA", viewer)
    assert alone.img_unique_id == "20260301_090000_BBBBBB"


async def test_each_change_is_kept_with_the_value_before(session: AsyncSession) -> None:
    service = ReviewService(session)
    (region,) = await board(session, "20260301_080000_AAAAAA", DAY1, 8, {"short": 1})
    await service.set_verdict(region, VerdictIn(verdict="real"), "anna")
    await service.set_verdict(region, VerdictIn(verdict="false_call", comment="dust"), "ben")
    await service.set_verdict(region, VerdictIn(verdict=None), "ben")
    history = await service.history("20260301_080000_AAAAAA")
    assert [(e.reviewer, e.value, e.previous, e.comment) for e in history.events] == [
        ("ben", None, "false_call", None),
        ("ben", "false_call", "real", "dust"),
        ("anna", "real", None, None),
    ]
    assert history.progress.reviewed_regions == 0
    with pytest.raises(RegionNotFound):
        await service.set_verdict(2**62, VerdictIn(verdict="real"), "anna")


async def test_concurrent_verdicts_on_one_board_keep_a_true_history(database_url: str) -> None:
    """Ten reviewers' changes to one region at once: each event's `previous` is the value
    the event before it set (the board's row lock orders them)."""
    engine = create_engine(Settings(_env_file=None), database_url)  # type: ignore[call-arg]
    sessions = create_session_factory(engine)
    img_id = "20260303_080000_CONCUR"
    try:
        async with unit_of_work(sessions) as session:
            (region,) = await board(session, img_id, date(2026, 3, 3), 8, {"short": 1})

        async def change(n: int) -> None:
            async with unit_of_work(sessions) as session:
                verdict = ("real", "false_call", "unsure")[n % 3]
                await ReviewService(session).set_verdict(
                    region, VerdictIn(verdict=verdict), f"r{n}"
                )

        await asyncio.gather(*(change(n) for n in range(10)))
        async with unit_of_work(sessions) as session:
            events = list(reversed((await ReviewService(session).history(img_id)).events))
            await session.execute(delete(Image).where(Image.img_unique_id == img_id))
    finally:
        await engine.dispose()
    assert len(events) == 10
    assert events[0].previous is None
    for before, after in itertools.pairwise(events):
        assert after.previous == before.value
