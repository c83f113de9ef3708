"""The daily rollups (migrations 20261202_0011 and 0013) against the direct aggregates.

Rows are written with plain SQL, as any writer could (bulk statements, one row per
statement, cascaded deletes, the ledger row before or after the result's rows); after
each step the trigger-kept rollups must equal what `aoi_rollups_rebuild()` computes from
the tables, and the dashboard answers read from the rollups, with and without a model
version filter, must equal the same answers computed from the tables directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.services.database.session import sqlalchemy_url
from app.services.history.dashboard import DashboardService, Period
from tests.support import create_database, drop_database

ROLLUPS = {
    "rollup_images_daily": "day, model_version",
    "rollup_classes_daily": "day, class_name, model_version",
    "rollup_heatmap_daily": "class_name, day, cell_row, cell_col, model_version",
    "rollup_heatmap_daily_all": "day, cell_row, cell_col, model_version",
    "rollup_timings_daily": "day, model_version",
}
DAY_1 = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
DAY_2 = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
VERSION = "v1"


@pytest.fixture
def db(postgres_server_url: str, migrated_template: str) -> Iterator[str]:
    url = create_database(postgres_server_url, template=migrated_template)
    yield url
    drop_database(url)


def _conn(url: str) -> psycopg.Connection[Any]:
    from sqlalchemy import make_url

    return psycopg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def _snapshot(cur: psycopg.Cursor[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup row with a non-zero measure (a row subtracted to zero counts as none),
    floats rounded to 9 digits."""
    out = {}
    for table, key in ROLLUPS.items():
        rows = cur.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
        keys = len(key.split(","))
        out[table] = [
            tuple(round(v, 9) if isinstance(v, float) else v for v in row)
            for row in rows
            if any(v for v in row[keys:])
        ]
    return out


def assert_rollups_match(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The trigger-kept rollups equal a rebuild from the tables (the rebuild is undone)."""
    with _conn(url) as conn, conn.cursor() as cur:
        kept = _snapshot(cur)
        cur.execute("SELECT aoi_rollups_rebuild()")
        rebuilt = _snapshot(cur)
        conn.rollback()
    assert kept == rebuilt
    return kept


def add_image(
    cur: psycopg.Cursor[Any],
    img_id: str,
    stamp: datetime,
    classes: dict[str, list[tuple[float, float]]],
    *,
    width: int = 640,
    height: int = 480,
    one_statement_per_class: bool = False,
    version: str | None = VERSION,
    ledger: str = "after_image",
) -> None:
    """An image, its ledger row (succeeded, model version `version`) and its classes and
    regions (centroids in pixels); total_regions is the number of centroids given.

    `ledger`: "after_image" (the ledger row inserted right after the image row),
    "first" (before it, as the agent's order: the ledger row is there before the result),
    "last" (after the regions) or "none" (no ledger row).
    """

    def ledger_row() -> None:
        cur.execute(
            "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
            " size_bytes, media_type, status, attempts, created_at, updated_at,"
            " model_service_seconds, total_seconds, model_version)"
            " VALUES (%s, 'f.png', 'in', 1, 'image/png', 'succeeded', 1, %s, %s, 0.2, 0.3,"
            " %s)",
            (img_id, stamp, stamp, version),
        )

    if ledger == "first":
        ledger_row()
    cur.execute(
        "INSERT INTO images VALUES (%s, %s, %s, %s, %s, 'in', 'c', 'm', 'o')",
        (img_id, height, width, 0.25, stamp),
    )
    if ledger == "after_image":
        ledger_row()
    _add_classes(cur, img_id, classes, one_statement_per_class)
    if ledger == "last":
        ledger_row()


def _add_classes(
    cur: psycopg.Cursor[Any],
    img_id: str,
    classes: dict[str, list[tuple[float, float]]],
    one_statement_per_class: bool,
) -> None:
    rows = [
        (img_id, class_id, name, len(points), 10 * len(points))
        for class_id, (name, points) in enumerate(classes.items(), start=1)
    ]
    if not rows:
        return
    if one_statement_per_class:
        ids = [
            cur.execute(
                "INSERT INTO classes (img_unique_id, class_id, class_name, total_regions,"
                " total_area_pixels) VALUES (%s, %s, %s, %s, %s) RETURNING class_unique_id",
                row,
            ).fetchone()[0]  # type: ignore[index]
            for row in rows
        ]
    else:
        values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
        ids = [
            r[0]
            for r in cur.execute(
                "INSERT INTO classes (img_unique_id, class_id, class_name, total_regions,"
                f" total_area_pixels) VALUES {values} RETURNING class_unique_id",
                [v for row in rows for v in row],
            ).fetchall()
        ]
    regions = [
        (class_uid, img_id, n, x, y)
        for class_uid, points in zip(ids, classes.values(), strict=True)
        for n, (x, y) in enumerate(points, start=1)
    ]
    if regions:
        values = ", ".join(
            ["(%s, %s, %s, %s, %s, 0, 0, 2, 2, 10, 8, 3, 2, 0.9, 1.5)"] * len(regions)
        )
        cur.execute(
            "INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x,"
            " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
            f" major_axis, minor_axis, circularity, aspect_ratio) VALUES {values}",
            [v for r in regions for v in r],
        )


def test_rollups_follow_inserts_and_every_kind_of_delete(db: str) -> None:
    with _conn(db) as conn, conn.cursor() as cur:
        add_image(cur, "20260301_235959_AAAAA1", DAY_1, {"open": [(0, 0), (639.9, 479.9)]})
        add_image(
            cur,
            "20260302_000001_AAAAA2",
            DAY_2,
            {"open": [(320, 240)], "short": [(700, -5), (10, 470)], "spur": []},
            one_statement_per_class=True,
        )
        add_image(cur, "20260302_000001_AAAAA3", DAY_2, {})  # no defect
        add_image(cur, "20260302_000001_AAAAA4", DAY_2, {"Open": [(1, 1)]}, width=1)
    kept = assert_rollups_match(db)
    assert kept["rollup_images_daily"][0][:4] == (date(2026, 3, 1), VERSION, 1, 1)
    assert kept["rollup_images_daily"][1][:4] == (date(2026, 3, 2), VERSION, 3, 2)
    assert sum(r[4] for r in kept["rollup_heatmap_daily_all"]) == 6  # region rows

    with _conn(db) as conn:  # a class on its own: its regions go by cascade
        conn.execute(
            "DELETE FROM classes WHERE img_unique_id = '20260302_000001_AAAAA2'"
            " AND class_name = 'short'"
        )
    assert_rollups_match(db)
    with _conn(db) as conn:  # a region on its own
        conn.execute(
            "DELETE FROM regions WHERE img_unique_id = '20260301_235959_AAAAA1' AND region_id = 2"
        )
    assert_rollups_match(db)
    with _conn(db) as conn:  # an image: classes and regions by cascade
        conn.execute("DELETE FROM images WHERE img_unique_id = '20260302_000001_AAAAA2'")
        conn.execute("DELETE FROM inspections WHERE img_unique_id = '20260302_000001_AAAAA2'")
    kept = assert_rollups_match(db)
    assert [r[:4] for r in kept["rollup_images_daily"]] == [
        (date(2026, 3, 1), VERSION, 1, 1),
        (date(2026, 3, 2), VERSION, 2, 1),
    ]
    with _conn(db) as conn, conn.cursor() as cur:  # stored and deleted in one transaction
        add_image(cur, "20260302_000001_AAAAA5", DAY_2, {"open": [(5, 5)]})
        cur.execute("DELETE FROM images WHERE img_unique_id = '20260302_000001_AAAAA5'")
    assert_rollups_match(db)
    with _conn(db) as conn:  # several images in one statement
        conn.execute(
            "INSERT INTO images SELECT '20260301_000000_B' || lpad(i::text, 5, '0'), 10, 10,"
            " 1.5, %s, 'in', NULL, NULL, NULL FROM generate_series(1, 30) i",
            (DAY_1,),
        )
    kept = assert_rollups_match(db)
    assert [r[:4] for r in kept["rollup_images_daily"]][:2] == [
        (date(2026, 3, 1), "", 30, 0),  # no ledger rows: no model version
        (date(2026, 3, 1), VERSION, 1, 1),
    ]


def test_timing_rollup_follows_the_ledger(db: str) -> None:
    with _conn(db) as conn:
        conn.execute(
            "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
            " size_bytes, media_type, status, attempts, created_at, updated_at)"
            " SELECT '20260301_000000_C' || lpad(i::text, 5, '0'), 'f', 'in', 1, 'image/png',"
            " 'pending', 0, %s, %s FROM generate_series(1, 6) i",
            (DAY_1, DAY_1),
        )
        conn.execute(
            "UPDATE inspections SET status = 'succeeded', model_service_seconds = 0.5,"
            " total_seconds = 0.75 WHERE img_unique_id <= '20260301_000000_C00004'"
        )
        conn.execute(  # a success whose model service time was not recorded
            "UPDATE inspections SET status = 'succeeded', total_seconds = 2"
            " WHERE img_unique_id = '20260301_000000_C00005'"
        )
    kept = assert_rollups_match(db)
    assert kept["rollup_timings_daily"] == [(date(2026, 3, 1), "", 5, 4, 2.0, 5, 5.0)]
    with _conn(db) as conn:
        conn.execute("UPDATE inspections SET status = 'failed' WHERE img_unique_id LIKE '%C00001'")
        conn.execute("DELETE FROM inspections WHERE img_unique_id LIKE '%C00002'")
    kept = assert_rollups_match(db)
    assert kept["rollup_timings_daily"] == [(date(2026, 3, 1), "", 3, 2, 1.0, 3, 3.5)]


async def assert_dashboard_matches(url: str, versions: list[str | None]) -> None:
    """Every dashboard answer read from the rollups equals the same answer computed from
    the tables (`use_rollups=False`), for each model version filter of `versions`, three
    date ranges, no class or two, and every heat map grid the rollup serves."""
    engine = create_async_engine(sqlalchemy_url(url))
    try:
        async with AsyncSession(engine) as session:
            rolled, direct = DashboardService(session), DashboardService(session, False)
            for version in versions:
                for start, end in [
                    (None, None),
                    (date(2026, 3, 2), None),
                    (None, date(2026, 3, 1)),
                ]:
                    period = Period(start, end, version)
                    a, b = await rolled.summary(period), await direct.summary(period)
                    assert a.model_dump() == b.model_dump(), (version, start, end)
                    for class_name in (None, "open", "short"):
                        days = Period(start or date(2026, 2, 28), end or date(2026, 3, 3), version)
                        a_days = await rolled.defects_per_day(days, class_name)
                        b_days = await direct.defects_per_day(days, class_name)
                        assert a_days.model_dump() == b_days.model_dump(), (version, class_name)
                        for bins in (4, 8, 16, 32):
                            heat = await rolled.heatmap(period, class_name, bins)
                            assert (
                                heat.model_dump()
                                == (await direct.heatmap(period, class_name, bins)).model_dump()
                            ), (version, class_name, bins)
    finally:
        await engine.dispose()


async def test_dashboard_from_rollups_equals_the_direct_queries(db: str) -> None:
    """Every inspection has model version v1, so filtering by it must give the same
    numbers as no filter, and both the numbers computed from the tables."""
    with _conn(db) as conn, conn.cursor() as cur:
        add_image(
            cur,
            "20260301_235959_AAAAA1",
            DAY_1,
            {"open": [(0, 0), (639.9, 479.9), (320, 240)], "short": [(100, 400)]},
        )
        add_image(cur, "20260302_000001_AAAAA2", DAY_2, {"open": [(-3, 500)], "spur": []})
        add_image(cur, "20260302_000001_AAAAA3", DAY_2, {})
        add_image(cur, "20260302_000001_AAAAA4", DAY_2, {"SHORT": [(7, 9), (600, 10)]})
    await assert_dashboard_matches(db, [None, VERSION, "v9"])
    engine = create_async_engine(sqlalchemy_url(db))
    try:
        async with AsyncSession(engine) as session:
            service = DashboardService(session)
            summary = await service.summary(Period())
            assert (summary.total_images, summary.images_with_defects) == (4, 3)
            assert {c.class_name: c.regions for c in summary.classes} == {
                "open": 4,
                "short": 1,
                "SHORT": 2,
                "spur": 0,
            }
            assert math.isclose(sum(c.share for c in summary.classes), 1.0)
            assert (await service.summary(Period(model_version=VERSION))) == summary
            nothing = await service.summary(Period(model_version="v9"))
            assert (nothing.total_images, nothing.total_defects, nothing.classes) == (0, 0, [])
    finally:
        await engine.dispose()


async def test_rollups_by_model_version_follow_the_ledger_in_any_order(db: str) -> None:
    """Two model versions, the ledger row written before, between or after the result's
    rows (or never), then versions changed, ledger rows and images deleted in every way:
    after each step the rollups equal a rebuild and the dashboard filtered by each version
    equals the direct computation."""
    versions: list[str | None] = [None, "v1", "v2", "v3"]
    with _conn(db) as conn, conn.cursor() as cur:
        add_image(cur, "20260301_235959_AAAAA1", DAY_1, {"open": [(1, 1), (600, 400)]})
        add_image(
            cur,
            "20260301_235959_AAAAA2",
            DAY_1,
            {"open": [(10, 10)], "short": [(300, 200), (5, 470)]},
            version="v2",
            ledger="first",
        )
        add_image(
            cur,
            "20260302_000001_AAAAA3",
            DAY_2,
            {"short": [(320, 240)], "spur": []},
            version="v2",
            ledger="last",
            one_statement_per_class=True,
        )
        add_image(cur, "20260302_000001_AAAAA4", DAY_2, {"open": [(7, 7)]}, ledger="first")
        add_image(cur, "20260302_000001_AAAAA5", DAY_2, {"open": [(8, 8)]}, version=None)
        add_image(cur, "20260302_000001_AAAAA6", DAY_2, {"spur": [(9, 9)]}, ledger="none")
        add_image(cur, "20260302_000001_AAAAA7", DAY_2, {}, version="v2", ledger="first")
    kept = assert_rollups_match(db)
    assert [r[:4] for r in kept["rollup_images_daily"]] == [
        (date(2026, 3, 1), "v1", 1, 1),
        (date(2026, 3, 1), "v2", 1, 1),
        (date(2026, 3, 2), "", 2, 2),  # a ledger row without a version, and none
        (date(2026, 3, 2), "v1", 1, 1),
        (date(2026, 3, 2), "v2", 2, 1),
    ]
    assert [r[:3] for r in kept["rollup_timings_daily"]] == [
        (date(2026, 3, 1), "v1", 1),
        (date(2026, 3, 1), "v2", 1),
        (date(2026, 3, 2), "", 1),
        (date(2026, 3, 2), "v1", 1),
        (date(2026, 3, 2), "v2", 2),
    ]
    await assert_dashboard_matches(db, versions)

    steps = [
        # A stored image's ledger row changes version; two swap in one statement.
        "UPDATE inspections SET model_version = 'v3' WHERE img_unique_id LIKE '%AAAAA4'",
        "UPDATE inspections SET model_version = CASE model_version WHEN 'v1' THEN 'v2'"
        " ELSE 'v1' END WHERE img_unique_id IN ('20260301_235959_AAAAA1',"
        " '20260301_235959_AAAAA2')",
        # An update that changes no version moves nothing.
        "UPDATE inspections SET attempts = attempts + 1",
        # The ledger row goes first, the image stays (now of no version), then goes too.
        "DELETE FROM inspections WHERE img_unique_id LIKE '%AAAAA3'",
        "DELETE FROM images WHERE img_unique_id LIKE '%AAAAA3'",
        # A class, then a region, of a v1 image on their own.
        "DELETE FROM classes WHERE img_unique_id LIKE '%AAAAA2' AND class_name = 'short'",
        "DELETE FROM regions WHERE img_unique_id LIKE '%AAAAA1'",
        # The image first (as retention does), then its ledger row.
        "DELETE FROM images WHERE img_unique_id LIKE '%AAAAA7'",
        "DELETE FROM inspections WHERE img_unique_id LIKE '%AAAAA7'",
        # A ledger row arrives for an image stored without one.
        "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
        " size_bytes, media_type, status, attempts, created_at, updated_at, model_version)"
        " VALUES ('20260302_000001_AAAAA6', 'f.png', 'in', 1, 'image/png', 'failed', 1,"
        " now(), now(), 'v3')",
    ]
    for step in steps:
        with _conn(db) as conn:
            conn.execute(step)
        assert_rollups_match(db)
        await assert_dashboard_matches(db, versions)
    kept = assert_rollups_match(db)
    assert [r[:4] for r in kept["rollup_images_daily"]] == [
        (date(2026, 3, 1), "v1", 1, 1),
        (date(2026, 3, 1), "v2", 1, 1),  # its region rows went, its class counts stay
        (date(2026, 3, 2), "", 1, 1),
        (date(2026, 3, 2), "v3", 2, 2),
    ]


def test_concurrent_writers_touching_the_same_rows_in_opposite_orders_never_deadlock(
    db: str,
) -> None:
    """Two connections each store, per transaction, one image of each of two days, in
    opposite day orders — on row locks alone the second upsert of each would wait for the
    other's first: a deadlock (with the lock removed from the trigger functions this test
    fails with DeadlockDetected; tried by hand). The advisory lock makes them take turns;
    every transaction commits and the sums hold."""
    import threading

    errors: list[BaseException] = []

    def writer(tag: str, days: list[datetime]) -> None:
        try:
            with _conn(db) as conn:
                for n in range(20):
                    with conn.transaction(), conn.cursor() as cur:
                        for k, day in enumerate(days):
                            add_image(
                                cur,
                                f"20260301_000000_{tag}{k}{n:03d}",
                                day,
                                {"open": [(float(n), 1.0)], "short": []},
                                one_statement_per_class=True,
                            )
        except BaseException as exc:  # reported below, with the test's assertion
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=("X", [DAY_1, DAY_2])),
        threading.Thread(target=writer, args=("Y", [DAY_2, DAY_1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    kept = assert_rollups_match(db)
    assert [r[:4] for r in kept["rollup_images_daily"]] == [
        (date(2026, 3, 1), VERSION, 40, 40),
        (date(2026, 3, 2), VERSION, 40, 40),
    ]
