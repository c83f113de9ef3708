"""The control charts read from a real PostgreSQL (app/services/spc/service.py).

Boards are inserted directly with SQL (`add_image` of the rollup tests: image, ledger row,
classes, regions; the rollup triggers run) for volume: 21 days of 40 boards. Per-day
charts in UTC read the rollups; in any other zone (`Etc/UTC`, the same clock) or per shift
they group `images` in SQL, so the two paths must give the same chart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.config import Settings
from app.models.spc import SpcChart
from app.services.boards.repository import ContextFilter
from app.services.database.session import sqlalchemy_url
from app.services.spc.service import ChartQuery, ShiftsNotConfigured, SpcService
from tests.services.history.test_rollups import _conn, add_image
from tests.support import create_database, drop_database

FIRST_DAY = date(2026, 3, 1)
DAYS = 21
BOARDS_PER_DAY = 40


def _img_id(day: date, n: int) -> str:
    return f"{day:%Y%m%d}_{n:06d}_ABC{n % 1000:03d}"


@pytest.fixture(scope="module")
def db(postgres_server_url: str, migrated_template: str) -> Iterator[str]:
    """20 in-control days (10 of 40 boards defective, 1 short each) and a bad 21st day
    (30 defective, 3 shorts each); boards at 08:00 UTC plus one minute each."""
    url = create_database(postgres_server_url, template=migrated_template)
    with _conn(url) as conn, conn.cursor() as cur:
        for d in range(DAYS):
            day = FIRST_DAY + timedelta(days=d)
            bad = 30 if d == DAYS - 1 else 10
            shorts = 3 if d == DAYS - 1 else 1
            for n in range(BOARDS_PER_DAY):
                stamp = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
                classes = {"Short": [(5.0, 5.0)] * shorts} if n < bad else {}
                add_image(cur, _img_id(day, n), stamp + timedelta(minutes=n), classes)
        conn.commit()
    yield url
    drop_database(url)


def _chart(url: str, settings: Settings, query: ChartQuery, class_name: str | None) -> SpcChart:
    async def run() -> SpcChart:
        engine = create_async_engine(sqlalchemy_url(url))
        try:
            async with AsyncSession(engine) as session:
                service = SpcService(session, settings)
                if class_name:
                    return await service.u_chart(query, class_name)
                return await service.p_chart(query)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _settings(**extra: Any) -> Settings:
    return Settings(_env_file=None, **extra)  # type: ignore[call-arg]


QUERY = ChartQuery(FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1))


def test_p_chart_alarms_on_the_bad_day_from_rollups_and_tables_alike(db: str) -> None:
    from_rollups = _chart(db, _settings(), QUERY, None)
    assert [p.boards for p in from_rollups.points] == [BOARDS_PER_DAY] * DAYS
    assert from_rollups.center == pytest.approx(0.25)  # the first 20 days
    last = from_rollups.points[-1]
    assert (last.key, last.count, last.rules) == ("2026-03-21", 30, [1])
    assert [(a.rule, a.side, a.first_key, a.open) for a in from_rollups.alarms] == [
        (1, "above", "2026-03-21", True)
    ]
    from_tables = _chart(db, _settings(spc_timezone="Etc/UTC"), QUERY, None)
    assert from_tables.model_dump(exclude={"timezone"}) == from_rollups.model_dump(
        exclude={"timezone"}
    )


def test_u_chart_of_a_class_in_any_letter_case(db: str) -> None:
    chart = _chart(db, _settings(spc_rules="1"), QUERY, "SHORT")
    assert chart.center == pytest.approx(10 / 40)
    assert chart.points[-1].value == pytest.approx(90 / 40)
    assert [(a.chart, a.rule, a.class_name, a.first_key) for a in chart.alarms] == [
        ("u", 1, "SHORT", "2026-03-21")
    ]
    assert _chart(db, _settings(spc_timezone="Etc/UTC", spc_rules="1"), QUERY, "short").points[
        -1
    ].count == (90)


def test_shifts_in_local_time_with_the_night_shift_on_the_day_it_starts(db: str) -> None:
    """08:00-08:39 UTC is 09:00-09:39 in Berlin (CET): shift A of that day; in Honolulu
    (UTC-10) it is 22:00-22:39 of the day before: night shift C of the day before."""
    shifts = "A=06:00-14:00,B=14:00-22:00,C=22:00-06:00"
    berlin = _chart(db, _settings(shifts=shifts, spc_timezone="Europe/Berlin"), _shift(), None)
    assert [p.key for p in berlin.points][:2] == ["2026-03-01/A", "2026-03-02/A"]
    assert {p.boards for p in berlin.points} == {BOARDS_PER_DAY}
    hawaii = _chart(db, _settings(shifts=shifts, spc_timezone="Pacific/Honolulu"), _shift(), None)
    # 08:00 UTC on 1 March is 22:00 on 28 February in Honolulu: out of the range.
    assert hawaii.points[0].key == "2026-03-01/C"
    assert len(hawaii.points) == DAYS - 1


def _shift() -> ChartQuery:
    return ChartQuery(QUERY.start_date, QUERY.end_date, "shift")


def test_shift_charts_need_shifts(db: str) -> None:
    with pytest.raises(ShiftsNotConfigured):
        _chart(db, _settings(), _shift(), None)


def test_a_product_no_board_was_sent_with_has_an_empty_chart(db: str) -> None:
    """The seeded boards have no board context: a product filter keeps none of them
    (read from the `images` rows, not the rollups, which count every board)."""
    query = ChartQuery(QUERY.start_date, QUERY.end_date, context=ContextFilter(product="X1"))
    assert _chart(db, _settings(), query, None).points == []
