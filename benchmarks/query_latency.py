"""Latency of the agent's query endpoints on a database of 10,000 inspected images.

Seeds a fresh, migrated database with COPY (psycopg `cursor.copy`): --images
images (default 10,000) with timestamps spread uniformly over the last 30 days,
3-12 regions each over 1-4 of the six DeepPCB defect classes (open, short,
mousebite, spur, spurious_copper, pin_hole), one `succeeded` ledger row each
(70 % of them in batches of 50), then VACUUM ANALYZE (what autovacuum would have
done on a production database). Then it starts the reference model service and
the agent (`python run.py`) on that database and times, client side and
sequentially over one keep-alive connection, --requests requests (default 300,
after --warmup untimed ones) of each of

* `GET /api/images?page=1&limit=20`
* `GET /api/images?page=<deep>&limit=20` (default: the page 90 % of the way down)
* `GET /api/images?page=1&limit=20&class_name=<random class>`
* `GET /api/images/{random id}/regions`
* `GET /api/query/defects?class_name=<random class>` (default limit 50)
* `GET /api/stats`

and prints p50/p95/max in milliseconds. Target: p95 < 50 ms for `/api/images`
and `/regions` (PASS/MISS; never fails hard). With --explain (and for every
endpoint that misses the target) it runs the agent's own repository code
in-process against the same database, captures the SQL it sends, and prints
EXPLAIN (ANALYZE, BUFFERS) of each statement.

Usage::

    python benchmarks/query_latency.py [--images 10000] [--requests 300] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import string
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import psycopg
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    BenchmarkError,
    Deadline,
    agent_stack,
    machine_line,
    print_table,
    summarize,
    temporary_database,
    verdict,
)

CLASS_NAMES = ["open", "short", "mousebite", "spur", "spurious_copper", "pin_hole"]
CLASS_IDS = {name: i + 1 for i, name in enumerate(CLASS_NAMES)}  # DeepPCB type ids
TARGET_P95_MS = 50.0
IMAGE_SIZE_PX = 640
BATCH_SIZE = 50
ALPHABET = string.ascii_uppercase + string.digits


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="images to seed")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per endpoint")
    parser.add_argument("--limit", type=int, default=20, help="page size of /api/images")
    parser.add_argument(
        "--deep-page", type=int, default=None, help="deep page number (default: 90%% down)"
    )
    parser.add_argument("--seed", type=int, default=20261121, help="random seed of the data")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN every endpoint's SQL")
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB, help="(not used here)")
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server")
    parser.add_argument(
        "--time-limit", type=float, default=900.0, help="give up after this many seconds"
    )
    return parser.parse_args()


# -- seeding ----------------------------------------------------------------------------


def seed(database_url: str, count: int, rng: random.Random) -> tuple[list[str], int, float]:
    """Bulk-load `count` succeeded inspections; returns (image ids, regions, seconds)."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    ids: set[str] = set()
    images: list[tuple[Any, ...]] = []
    inspections: list[tuple[Any, ...]] = []
    classes: list[tuple[Any, ...]] = []
    regions: list[tuple[Any, ...]] = []
    batches: list[tuple[Any, ...]] = []
    class_uid = region_uid = 0
    stamps = sorted(now - timedelta(seconds=rng.uniform(0, 30 * 86400)) for _ in range(count))
    batch_id: str | None = None
    batch_left = 0
    for stamp in stamps:
        img_id = ""
        while not img_id or img_id in ids:
            img_id = f"{stamp:%Y%m%d_%H%M%S}_" + "".join(rng.choices(ALPHABET, k=6))
        ids.add(img_id)
        day = f"{stamp:%Y%m%d}"
        filename = f"{rng.randint(0, 99):02d}{rng.randint(0, 999999):06d}.jpg"
        input_path = f"uploads/{day}/{img_id}_{filename}"
        result_dir = f"results/{day}/{img_id}"
        model_s = rng.uniform(0.15, 0.35)
        images.append(
            (
                img_id,
                IMAGE_SIZE_PX,
                IMAGE_SIZE_PX,
                model_s * 0.9,
                stamp,
                input_path,
                f"{result_dir}/combined.png",
                f"{result_dir}/mask.png",
                f"{result_dir}/overlay.png",
            )
        )
        if batch_left == 0 and rng.random() < 0.7 * BATCH_SIZE / (0.7 * BATCH_SIZE + 0.3):
            batch_id, batch_left = f"B_{img_id}", BATCH_SIZE
            batches.append((batch_id, stamp, BATCH_SIZE, 0))
        in_batch = batch_left > 0
        inspections.append(
            (
                img_id,
                batch_id if in_batch else None,
                BATCH_SIZE - batch_left if in_batch else None,
                filename,
                input_path,
                rng.randint(60_000, 140_000),
                "image/jpeg",
                "succeeded",
                1,
                model_s,
                model_s + rng.uniform(0.02, 0.05),
                stamp,
                stamp,
                stamp,
            )
        )
        batch_left = max(0, batch_left - 1)
        total_regions = rng.randint(3, 12)
        names = rng.sample(CLASS_NAMES, rng.randint(1, min(4, total_regions)))
        cuts = sorted(rng.sample(range(1, total_regions), len(names) - 1))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total_regions], strict=True)]
        for name, size in zip(names, sizes, strict=True):
            class_uid += 1
            areas = []
            for region_id in range(1, size + 1):
                region_uid += 1
                row = _region(rng, region_uid, class_uid, img_id, region_id)
                areas.append(row[10])
                regions.append(row)
            classes.append((class_uid, img_id, CLASS_IDS[name], name, size, sum(areas)))
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        _copy(cur, "batches", "batch_id, created_at, total_images, rejected_files", batches)
        _copy(
            cur,
            "images",
            "img_unique_id, image_height, image_width, processing_time_seconds, timestamp,"
            " input_image_path, result_image_1_path, result_image_2_path, result_image_3_path",
            images,
        )
        _copy(
            cur,
            "inspections",
            "img_unique_id, batch_id, batch_position, original_filename, input_image_path,"
            " size_bytes, media_type, status, attempts, model_service_seconds, total_seconds,"
            " created_at, updated_at, completed_at",
            inspections,
        )
        _copy(
            cur,
            "classes",
            "class_unique_id, img_unique_id, class_id, class_name, total_regions,"
            " total_area_pixels",
            classes,
        )
        _copy(
            cur,
            "regions",
            "region_unique_id, class_unique_id, img_unique_id, region_id, centroid_x,"
            " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
            " major_axis, minor_axis, circularity, aspect_ratio",
            regions,
        )
        for table, column in [("classes", "class_unique_id"), ("regions", "region_unique_id")]:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" (SELECT max({column}) FROM {table}))"
            )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return sorted(ids), len(regions), time.perf_counter() - started


def _region(
    rng: random.Random, region_uid: int, class_uid: int, img_id: str, region_id: int
) -> tuple[Any, ...]:
    """One plausible DeepPCB defect region (pixels; shape descriptors unitless)."""
    area = int(np.exp(rng.uniform(np.log(20), np.log(600))))
    aspect = rng.uniform(1.0, 4.0)
    height = max(2, round((area * aspect) ** 0.5))
    width = max(2, round(area / height * 1.3))
    x = rng.randint(0, IMAGE_SIZE_PX - width)
    y = rng.randint(0, IMAGE_SIZE_PX - height)
    major = max(width, height) * 1.05
    minor = min(width, height) * 0.95
    perimeter = 2.0 * (width + height) * rng.uniform(0.85, 1.1)
    return (
        region_uid,
        class_uid,
        img_id,
        region_id,
        x + width / 2,
        y + height / 2,
        x,
        y,
        width,
        height,
        area,
        perimeter,
        major,
        minor,
        min(1.0, 4 * np.pi * area / perimeter**2),
        major / minor,
    )


def _copy(cur: psycopg.Cursor[Any], table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


# -- timing -----------------------------------------------------------------------------

Endpoint = tuple[str, Callable[[], str], bool]  # label, path maker, under the target


def endpoints(ids: list[str], limit: int, deep_page: int, rng: random.Random) -> list[Endpoint]:
    """The measured requests: label, a function returning the next path, target applies."""
    return [
        ("GET /api/images page 1", lambda: f"/api/images?page=1&limit={limit}", True),
        (
            f"GET /api/images page {deep_page}",
            lambda: f"/api/images?page={deep_page}&limit={limit}",
            True,
        ),
        (
            "GET /api/images class_name, page 1",
            lambda: f"/api/images?page=1&limit={limit}&class_name={rng.choice(CLASS_NAMES)}",
            True,
        ),
        ("GET /api/images/{id}/regions", lambda: f"/api/images/{rng.choice(ids)}/regions", True),
        (
            "GET /api/query/defects?class_name",
            lambda: f"/api/query/defects?class_name={rng.choice(CLASS_NAMES)}",
            False,
        ),
        ("GET /api/stats", lambda: "/api/stats", False),
    ]


def time_endpoint(
    client: httpx2.Client, base: str, make_path: Callable[[], str], n: int, deadline: Deadline
) -> list[float]:
    """`n` sequential GETs; returns client seconds each.

    Raises:
        BenchmarkError: an answer was not 200, or the time limit passed.
    """
    timings = []
    for _ in range(n):
        deadline.check("query_latency")
        path = make_path()
        started = time.perf_counter()
        response = client.get(base + path)
        timings.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise BenchmarkError(f"{path} answered {response.status_code}: {response.text[:200]}")
    return timings


# -- EXPLAIN of the agent's own SQL -----------------------------------------------------


async def explain(
    database_url: str, labels: list[str], ids: list[str], limit: int, deep: int
) -> None:
    """Run the agent's repository code for each endpoint, capture its SQL, EXPLAIN it."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from app.services.database.repositories import (
        DefectFilters,
        ImageFilters,
        ImageRepository,
        InspectionRepository,
    )
    from app.services.database.session import sqlalchemy_url

    engine = create_async_engine(sqlalchemy_url(database_url))
    captured: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, _x: Any, _m: bool) -> None:
        captured.append((statement, parameters))

    calls: dict[str, Callable[[AsyncSession], Awaitable[Any]]] = {
        "GET /api/images page 1": lambda s: ImageRepository(s).list_page(ImageFilters(), 0, limit),
        f"GET /api/images page {deep}": lambda s: ImageRepository(s).list_page(
            ImageFilters(), (deep - 1) * limit, limit
        ),
        "GET /api/images class_name, page 1": lambda s: ImageRepository(s).list_page(
            ImageFilters(class_name="pin_hole"), 0, limit
        ),
        "GET /api/images/{id}/regions": lambda s: _regions(ImageRepository(s), ids[len(ids) // 2]),
        "GET /api/query/defects?class_name": lambda s: ImageRepository(s).query_defects(
            DefectFilters(class_name="spur"), 0, 50
        ),
        "GET /api/stats": lambda s: _stats(ImageRepository(s), InspectionRepository(s)),
    }
    try:
        for label in labels:
            captured.clear()
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
            async with AsyncSession(engine) as session:
                await calls[label](session)
            event.remove(engine.sync_engine, "before_cursor_execute", capture)
            print(f"\n### EXPLAIN (ANALYZE, BUFFERS): {label}")
            async with engine.connect() as conn:
                for statement, parameters in list(captured):
                    plan = await conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                    )
                    print("\n" + " ".join(statement.split()))
                    print(f"  parameters: {parameters}")
                    for (line,) in plan.all():
                        print("  " + line)
    finally:
        await engine.dispose()


async def _regions(repo: Any, img_unique_id: str) -> None:
    await repo.get(img_unique_id)
    await repo.classes_with_regions(img_unique_id)


async def _stats(images: Any, inspections: Any) -> None:
    from app.services.database.repositories import ImageFilters

    await images.totals()
    await inspections.counts_by_status()
    await inspections.timing_means()
    await images.list_page(ImageFilters(), 0, 10)
    await inspections.recent_failures(10)
    await inspections.count_batches()
    await images.defects_by_class()


# -- main -------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    deadline = Deadline(args.time_limit)
    pages = -(-args.images // args.limit)
    deep_page = args.deep_page or max(1, int(pages * 0.9))
    print(f"query latency: {args.images} images, {args.requests} requests each, {machine_line()}")
    rows = []
    missed: list[str] = []
    with temporary_database(args.server_url) as database_url:
        ids, region_count, seconds = seed(database_url, args.images, rng)
        print(f"seeded {len(ids)} images, {region_count} regions by COPY in {seconds:.1f} s")
        with (
            agent_stack(args.server_url, database_url=database_url) as stack,
            httpx2.Client(timeout=60.0) as client,
        ):
            for label, make_path, targeted in endpoints(ids, args.limit, deep_page, rng):
                time_endpoint(client, stack.agent_url, make_path, args.warmup, deadline)
                s = summarize(
                    time_endpoint(client, stack.agent_url, make_path, args.requests, deadline)
                )
                result = verdict(s.p95_ms < TARGET_P95_MS) if targeted else "(no target)"
                if targeted and s.p95_ms >= TARGET_P95_MS:
                    missed.append(label)
                rows.append((label, s.n, s.median_ms, s.p95_ms, s.max_ms, result))
        print()
        print_table(["endpoint", "n", "p50 ms", "p95 ms", "max ms", "p95 < 50 ms"], rows)
        labels = [row[0] for row in rows] if args.explain else missed
        if labels:
            asyncio.run(explain(database_url, labels, ids, args.limit, deep_page))
    print(f"finished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
