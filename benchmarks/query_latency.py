"""Latency of the agent's query and dashboard endpoints on a database of --images images.

Seeds a scratch database (created on the PostgreSQL server of --database-url /
AOI_BENCH_DATABASE_URL, migrated, dropped at the end) by COPY, in chunks so memory
stays flat at a million images: --images images (default 10,000) with timestamps
spread uniformly over the last --days days (default 30), 3-12 regions each (about 7.5
on average: 7.5 M at a million images) over 1-4 of the six DeepPCB defect classes
(open, short, mousebite, spur, spurious_copper, pin_hole), one `succeeded` ledger row
each (70 % of them in batches of 50) naming one of two model versions in turn (two
models compared side by side every day: the rollups hold two rows where one model would
need one, the worst case for the unfiltered readers that sum over versions). The load
runs with triggers off (`session_replication_role = replica`: no per-row foreign-key
checks); then `aoi_rollups_rebuild()` fills the daily rollups as the triggers would
have, and VACUUM ANALYZE does what autovacuum would do on a production database.

Then it starts the reference model service and the agent (`python run.py`) on that
database and times, client side and sequentially over one keep-alive connection,
--requests requests (after --warmup untimed ones) of each targeted endpoint:

* `/api/images` page 1; a deep page by `cursor` (a random position in the oldest 20 %);
  the last page by `cursor`; page 1 with a random `class_name`
* `/api/images/{id}` and `/api/images/{id}/regions` of random images
* `/api/query/defects?class_name=` page 1 and a deep page by `cursor`
* `/api/stats`
* each dashboard query as the web UI sends it: `summary`, `defects-per-day` (last 30
  days), `heatmap` (32 × 32), and `summary` and `heatmap?class_name` over one week;
  `summary` and `heatmap` filtered by one `model_version`

and prints p50/p95/max in milliseconds with PASS/MISS against p95 < 50 ms (never fails
hard). Paths the rollups and keyset do not serve are timed too, --slow-requests times
each, without a target: the deep page by `page` (OFFSET) and a 64 × 64 heatmap
(computed from the tables directly). With --explain
(and for every endpoint that misses) it runs the agent's own repository code
in-process, captures its SQL and prints EXPLAIN (ANALYZE, BUFFERS) of each statement.

Usage::

    python benchmarks/query_latency.py [--images 1000000] [--requests 300] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import statistics
import string
import time
from collections.abc import Awaitable, Callable, Iterator
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

from app.services.history.cursors import (
    DefectKey,
    ImageKey,
    encode_defect_cursor,
    encode_image_cursor,
)

CLASS_NAMES = ["open", "short", "mousebite", "spur", "spurious_copper", "pin_hole"]
CLASS_IDS = {name: i + 1 for i, name in enumerate(CLASS_NAMES)}  # DeepPCB type ids
TARGET_P95_MS = 50.0
IMAGE_SIZE_PX = 640
BATCH_SIZE = 50
CHUNK_IMAGES = 20_000
MODEL_VERSIONS = ["bench-1.0", "bench-1.1"]
PRODUCTS = ("CTRL-A", "CTRL-B", "PSU-C", "IO-D")
LINES = ("L1", "L2", "L3")
MODEL_VERSION = MODEL_VERSIONS[0]  # the one the filtered requests ask for
ALPHABET = string.ascii_uppercase + string.digits


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="images to seed")
    parser.add_argument("--days", type=int, default=30, help="days the timestamps spread over")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint")
    parser.add_argument(
        "--slow-requests",
        type=int,
        default=10,
        help="timed requests per untargeted endpoint (0: skip them)",
    )
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per endpoint")
    parser.add_argument("--limit", type=int, default=20, help="page size of /api/images")
    parser.add_argument(
        "--deep-page", type=int, default=None, help="deep OFFSET page number (default: 90%% down)"
    )
    parser.add_argument("--seed", type=int, default=20261121, help="random seed of the data")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN every endpoint's SQL")
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB, help="(not used here)")
    parser.add_argument(
        "--database-url",
        "--server-url",
        dest="server_url",
        default=DEFAULT_SERVER_URL,
        help="PostgreSQL server to create the scratch database on",
    )
    parser.add_argument(
        "--keep-database",
        action="store_true",
        help="do not drop the seeded database at the end (prints its URL, for --reuse-database)",
    )
    parser.add_argument(
        "--reuse-database",
        default=None,
        help="time against this database seeded by an earlier --keep-database run (no seeding)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=3600.0, help="give up after this many seconds"
    )
    return parser.parse_args()


# -- seeding ----------------------------------------------------------------------------


class Seeded:
    """What the timing needs to know of the seeded data (ids newest first)."""

    def __init__(self) -> None:
        self.ids: list[str] = []  # oldest first
        self.stamps: list[datetime] = []
        self.regions = 0
        self.old_limit = 0  # images below this index (oldest first) are the oldest 20 %
        # Image index (oldest first) -> its first region's (class_id, region_id, region uid).
        self.first_region: dict[int, tuple[int, int, int]] = {}

    def image_key(self, newest_first_index: int) -> ImageKey:
        """The listing key of the image at this position, newest first."""
        i = len(self.ids) - 1 - newest_first_index
        return ImageKey(self.stamps[i], self.ids[i])


def load_seeded(database_url: str, rng: random.Random) -> Seeded:
    """What `seed` returned, read back from a database it filled (for --reuse-database);
    the deep defect cursors come from 2,000 random images of the oldest 20 %."""
    seeded = Seeded()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT img_unique_id, timestamp FROM images ORDER BY timestamp, img_unique_id"
        ).fetchall()
        seeded.ids = [r[0] for r in rows]
        seeded.stamps = [r[1] for r in rows]
        seeded.regions = conn.execute("SELECT count(*) FROM regions").fetchone()[0]  # type: ignore[index]
        seeded.old_limit = max(1, len(rows) // 5)
        sample = rng.sample(range(seeded.old_limit), min(2000, seeded.old_limit))
        firsts = conn.execute(
            "SELECT DISTINCT ON (g.img_unique_id) g.img_unique_id, c.class_id, g.region_id,"
            " g.region_unique_id FROM regions g"
            " JOIN classes c ON c.class_unique_id = g.class_unique_id"
            " WHERE g.img_unique_id = ANY(%s)"
            " ORDER BY g.img_unique_id, c.class_id, g.region_id, g.region_unique_id",
            ([seeded.ids[i] for i in sample],),
        ).fetchall()
    index = {img_id: i for i, img_id in enumerate(seeded.ids)}
    seeded.first_region = {index[r[0]]: (r[1], r[2], r[3]) for r in firsts}
    return seeded


@contextlib.contextmanager
def scratch_database(args: argparse.Namespace) -> Iterator[str]:
    """The database to time against: --reuse-database as it is, else a fresh one that is
    dropped at the end (kept with --keep-database)."""
    if args.reuse_database:
        yield args.reuse_database
    elif args.keep_database:
        with temporary_database(args.server_url) as url:
            name = url.rsplit("/", 1)[-1]
            kept = url.replace(name, name + "_kept")
            yield url
            with psycopg.connect(url.replace(name, "postgres"), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{name}_kept"')  # not dropped
                conn.execute(f'CREATE DATABASE "{name}"')  # what temporary_database drops
            print(f"kept the seeded database: --reuse-database {kept}")
    else:
        with temporary_database(args.server_url) as url:
            yield url


def _suffix(n: int) -> str:
    """Six base-36 characters, unique per n below 36**6 (so ids never collide)."""
    out = []
    for _ in range(6):
        n, digit = divmod(n, 36)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


def seed(database_url: str, count: int, days: int, rng: random.Random) -> tuple[Seeded, float]:
    """Bulk-load `count` succeeded inspections by COPY, CHUNK_IMAGES at a time; returns
    what was seeded and the seconds it took (load, rollup rebuild, VACUUM ANALYZE)."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    nprng = np.random.default_rng(rng.randrange(2**32))
    offsets = np.sort(nprng.uniform(0, days * 86400, count))[::-1]  # oldest first
    seeded = Seeded()
    seeded.old_limit = max(1, count // 5)
    state = {"class_uid": 0, "region_uid": 0, "batch_id": None, "batch_left": 0}
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no triggers, no FK checks
        for first in range(0, count, CHUNK_IMAGES):
            chunk = offsets[first : first + CHUNK_IMAGES]
            _seed_chunk(cur, now, chunk, first, seeded, state, rng, nprng)
            conn.commit()
        for table, column in [("classes", "class_unique_id"), ("regions", "region_unique_id")]:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" greatest(1, (SELECT max({column}) FROM {table})))"
            )
        loaded = time.perf_counter() - started
        print(f"  COPY of {count} images, {seeded.regions} regions: {loaded:.1f} s", flush=True)
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("SELECT aoi_rollups_rebuild()")
        conn.commit()
        print(f"  rollups rebuilt: {time.perf_counter() - started - loaded:.1f} s", flush=True)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return seeded, time.perf_counter() - started


def _seed_chunk(
    cur: psycopg.Cursor[Any],
    now: datetime,
    offsets: np.ndarray,
    first: int,
    seeded: Seeded,
    state: dict[str, Any],
    rng: random.Random,
    nprng: np.random.Generator,
) -> None:
    images: list[tuple[Any, ...]] = []
    inspections: list[tuple[Any, ...]] = []
    classes: list[tuple[Any, ...]] = []
    batches: list[tuple[Any, ...]] = []
    contexts: list[tuple[Any, ...]] = []
    region_class: list[int] = []
    region_img: list[str] = []
    region_rid: list[int] = []
    class_rows_of_regions: list[int] = []  # index into `classes` per region
    for n, offset in enumerate(offsets.tolist()):
        stamp = now - timedelta(seconds=offset)
        stamp = stamp.replace(microsecond=rng.randrange(1_000_000))
        img_id = f"{stamp:%Y%m%d_%H%M%S}_" + _suffix(first + n)
        seeded.ids.append(img_id)
        seeded.stamps.append(stamp)
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
        if state["batch_left"] == 0 and rng.random() < 0.7 * BATCH_SIZE / (0.7 * BATCH_SIZE + 0.3):
            state["batch_id"], state["batch_left"] = f"B_{img_id}", BATCH_SIZE
            batches.append((state["batch_id"], stamp, BATCH_SIZE, 0))
        in_batch = state["batch_left"] > 0
        inspections.append(
            (
                img_id,
                state["batch_id"] if in_batch else None,
                BATCH_SIZE - state["batch_left"] if in_batch else None,
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
                "template",
                # Alternate (no draw: the rest of the data stays what the seed gave before).
                MODEL_VERSIONS[(first + n) % len(MODEL_VERSIONS)],
            )
        )
        state["batch_left"] = max(0, state["batch_left"] - 1)
        # Board context (no draw, as the model version): 4 products, 3 lines, 2 sides, a
        # lot per product and day, a serial per image.
        k_ctx = first + n
        contexts.append(
            (
                img_id,
                f"SN{k_ctx:09d}",
                PRODUCTS[k_ctx % len(PRODUCTS)],
                LINES[k_ctx % len(LINES)],
                "top" if k_ctx % 2 == 0 else "bottom",
                f"WO-{day}-{k_ctx % len(PRODUCTS)}",
            )
        )
        total_regions = rng.randint(3, 12)
        names = rng.sample(CLASS_NAMES, rng.randint(1, min(4, total_regions)))
        cuts = sorted(rng.sample(range(1, total_regions), len(names) - 1))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total_regions], strict=True)]
        for name, size in sorted(zip(names, sizes, strict=True), key=lambda c: CLASS_IDS[c[0]]):
            state["class_uid"] += 1
            classes.append([state["class_uid"], img_id, CLASS_IDS[name], name, size, 0])
            for region_id in range(1, size + 1):
                region_class.append(state["class_uid"])
                region_img.append(img_id)
                region_rid.append(region_id)
                class_rows_of_regions.append(len(classes) - 1)
        first_class = classes[-len(names)]
        if first + n < seeded.old_limit:
            seeded.first_region[first + n] = (first_class[2], 1, state["region_uid"] + 1)
        state["region_uid"] += total_regions
    k = len(region_class)
    uids = np.arange(state["region_uid"] - k + 1, state["region_uid"] + 1)
    area = np.exp(nprng.uniform(np.log(20), np.log(600), k)).astype(np.int64)
    aspect = nprng.uniform(1.0, 4.0, k)
    height = np.maximum(2, np.round(np.sqrt(area * aspect))).astype(np.int64)
    width = np.maximum(2, np.round(area / height * 1.3)).astype(np.int64)
    x = (nprng.random(k) * (IMAGE_SIZE_PX - width + 1)).astype(np.int64)
    y = (nprng.random(k) * (IMAGE_SIZE_PX - height + 1)).astype(np.int64)
    major = np.maximum(width, height) * 1.05
    minor = np.minimum(width, height) * 0.95
    perimeter = 2.0 * (width + height) * nprng.uniform(0.85, 1.1, k)
    circularity = np.minimum(1.0, 4 * np.pi * area / perimeter**2)
    class_area = np.bincount(
        np.asarray(class_rows_of_regions), weights=area, minlength=len(classes)
    )
    for row, total in zip(classes, class_area.tolist(), strict=True):
        row[5] = int(total)
    seeded.regions += k
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
        " created_at, updated_at, completed_at, model_name, model_version",
        inspections,
    )
    _copy(
        cur,
        "inspection_contexts",
        "img_unique_id, board_serial, product, line, side, lot",
        contexts,
    )
    _copy(
        cur,
        "classes",
        "class_unique_id, img_unique_id, class_id, class_name, total_regions, total_area_pixels",
        classes,
    )
    _copy(
        cur,
        "regions",
        "region_unique_id, class_unique_id, img_unique_id, region_id, centroid_x,"
        " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
        " major_axis, minor_axis, circularity, aspect_ratio",
        zip(
            uids.tolist(),
            region_class,
            region_img,
            region_rid,
            (x + width / 2).tolist(),
            (y + height / 2).tolist(),
            x.tolist(),
            y.tolist(),
            width.tolist(),
            height.tolist(),
            area.tolist(),
            perimeter.tolist(),
            major.tolist(),
            minor.tolist(),
            circularity.tolist(),
            (major / minor).tolist(),
            strict=True,
        ),
    )


def _copy(cur: psycopg.Cursor[Any], table: str, columns: str, rows: Any) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


# -- timing -----------------------------------------------------------------------------

Endpoint = tuple[str, Callable[[], str], bool]  # label, path maker, under the target


def endpoints(seeded: Seeded, limit: int, deep_page: int, rng: random.Random) -> list[Endpoint]:
    """The measured requests: label, a function returning the next path, target applies."""
    n = len(seeded.ids)
    ids = seeded.ids
    today = datetime.now(UTC).date()
    week = f"start_date={today - timedelta(days=6)}&end_date={today}"

    def deep_cursor() -> str:
        position = rng.randrange(int(n * 0.8), max(int(n * 0.8) + 1, n - limit))
        return encode_image_cursor("succeeded", seeded.image_key(position))

    last_cursor = encode_image_cursor("succeeded", seeded.image_key(max(0, n - limit // 2 - 1)))

    old = sorted(seeded.first_region)

    def deep_defect_cursor() -> str:
        i = rng.choice(old)  # an image of the oldest 20 % (ids are oldest first)
        class_id, region_id, region_uid = seeded.first_region[i]
        return encode_defect_cursor(
            DefectKey(seeded.stamps[i], ids[i], class_id, region_id, region_uid)
        )

    return [
        ("GET /api/images page 1", lambda: f"/api/images?limit={limit}", True),
        (
            "GET /api/images deep, by cursor",
            lambda: f"/api/images?limit={limit}&cursor={deep_cursor()}",
            True,
        ),
        (
            "GET /api/images last page, by cursor",
            lambda: f"/api/images?limit={limit}&cursor={last_cursor}",
            True,
        ),
        (
            "GET /api/images class_name, page 1",
            lambda: f"/api/images?limit={limit}&class_name={rng.choice(CLASS_NAMES)}",
            True,
        ),
        ("GET /api/images/{id}", lambda: f"/api/images/{rng.choice(ids)}", True),
        ("GET /api/images/{id}/regions", lambda: f"/api/images/{rng.choice(ids)}/regions", True),
        (
            "GET /api/query/defects?class_name",
            lambda: f"/api/query/defects?class_name={rng.choice(CLASS_NAMES)}",
            True,
        ),
        (
            "GET /api/query/defects deep, by cursor",
            lambda: f"/api/query/defects?cursor={deep_defect_cursor()}",
            True,
        ),
        ("GET /api/stats", lambda: "/api/stats", True),
        ("GET /api/dashboard/summary", lambda: "/api/dashboard/summary", True),
        ("GET /api/dashboard/summary, one week", lambda: f"/api/dashboard/summary?{week}", True),
        ("GET /api/dashboard/defects-per-day", lambda: "/api/dashboard/defects-per-day", True),
        ("GET /api/dashboard/heatmap", lambda: "/api/dashboard/heatmap?bins=32", True),
        (
            "GET /api/dashboard/heatmap class_name, one week",
            lambda: f"/api/dashboard/heatmap?class_name={rng.choice(CLASS_NAMES)}&{week}",
            True,
        ),
        (
            "GET /api/dashboard/summary model_version",
            lambda: f"/api/dashboard/summary?model_version={MODEL_VERSION}",
            True,
        ),
        (
            "GET /api/dashboard/heatmap model_version",
            lambda: f"/api/dashboard/heatmap?bins=32&model_version={MODEL_VERSION}",
            True,
        ),
        # Board-context filters (issue 14): read from the tables, not the rollups.
        (
            "GET /api/dashboard/summary product",
            lambda: f"/api/dashboard/summary?product={rng.choice(PRODUCTS)}",
            False,
        ),
        (
            "GET /api/dashboard/summary line+side, one week",
            lambda: f"/api/dashboard/summary?line={rng.choice(LINES)}&side=top&{week}",
            False,
        ),
        (
            "GET /api/dashboard/defects-per-day product",
            lambda: f"/api/dashboard/defects-per-day?product={rng.choice(PRODUCTS)}",
            False,
        ),
        (
            "GET /api/dashboard/heatmap product",
            lambda: f"/api/dashboard/heatmap?bins=32&product={rng.choice(PRODUCTS)}",
            False,
        ),
        (
            "GET /api/dashboard/summary board_serial",
            lambda: f"/api/dashboard/summary?board_serial=SN{rng.randrange(n):09d}",
            False,
        ),
        (
            "GET /api/spc/p-chart product",
            lambda: f"/api/spc/p-chart?product={rng.choice(PRODUCTS)}",
            False,
        ),
        (
            "GET /api/dashboard/board-contexts",
            lambda: "/api/dashboard/board-contexts",
            False,
        ),
        (
            f"GET /api/images page {deep_page} (OFFSET)",
            lambda: f"/api/images?page={deep_page}&limit={limit}",
            False,
        ),
        (
            "GET /api/dashboard/heatmap bins=64 (direct)",
            lambda: "/api/dashboard/heatmap?bins=64",
            False,
        ),
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
    database_url: str, labels: list[str], seeded: Seeded, limit: int, print_plans: bool
) -> dict[str, float]:
    """Run the agent's own service code for each endpoint, capture its SQL and EXPLAIN
    ANALYZE it three times; returns per endpoint the median of the summed server time
    (planning + execution) of its statements, ms, and prints the plans if asked."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from app.services.database.session import sqlalchemy_url
    from app.services.history.dashboard import DashboardService, Period
    from app.services.history.queries import Links, QueryService
    from app.services.history.repository import DefectFilters, ImageFilters

    engine = create_async_engine(sqlalchemy_url(database_url))
    captured: list[tuple[str, Any]] = []
    n = len(seeded.ids)
    middle = seeded.ids[n // 2]
    today = datetime.now(UTC).date()
    week = Period(today - timedelta(days=6), today)
    old = min(seeded.first_region)
    class_id, region_id, region_uid = seeded.first_region[old]
    old_defect = DefectKey(seeded.stamps[old], seeded.ids[old], class_id, region_id, region_uid)

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, _x: Any, _m: bool) -> None:
        captured.append((statement, parameters))

    def q(s: AsyncSession) -> QueryService:
        return QueryService(s, Links("http://agent"))

    calls: dict[str, Callable[[AsyncSession], Awaitable[Any]]] = {
        "GET /api/images page 1": lambda s: q(s).list_images(ImageFilters(), 1, limit),
        "GET /api/images deep, by cursor": lambda s: q(s).list_images(
            ImageFilters(), 1, limit, after=seeded.image_key(int(n * 0.9))
        ),
        "GET /api/images last page, by cursor": lambda s: q(s).list_images(
            ImageFilters(), 1, limit, after=seeded.image_key(max(0, n - limit // 2 - 1))
        ),
        "GET /api/images class_name, page 1": lambda s: q(s).list_images(
            ImageFilters(class_name="pin_hole"), 1, limit
        ),
        "GET /api/images/{id}": lambda s: q(s).image_or_inspection(middle),
        "GET /api/images/{id}/regions": lambda s: q(s).image_regions(middle),
        "GET /api/query/defects?class_name": lambda s: q(s).query_defects(
            DefectFilters(class_name="spur"), 1, 50
        ),
        "GET /api/query/defects deep, by cursor": lambda s: q(s).query_defects(
            DefectFilters(), 1, 50, after=old_defect
        ),
        "GET /api/stats": lambda s: q(s).stats(),
        "GET /api/dashboard/summary": lambda s: DashboardService(s).summary(Period()),
        "GET /api/dashboard/summary, one week": lambda s: DashboardService(s).summary(week),
        "GET /api/dashboard/defects-per-day": lambda s: DashboardService(s).defects_per_day(
            Period(), None
        ),
        "GET /api/dashboard/heatmap": lambda s: DashboardService(s).heatmap(Period(), None, 32),
        "GET /api/dashboard/heatmap class_name, one week": lambda s: DashboardService(s).heatmap(
            week, "spur", 32
        ),
        "GET /api/dashboard/summary model_version": lambda s: DashboardService(s).summary(
            Period(model_version=MODEL_VERSION)
        ),
        "GET /api/dashboard/heatmap model_version": lambda s: DashboardService(s).heatmap(
            Period(model_version=MODEL_VERSION), None, 32
        ),
    }
    server_ms: dict[str, float] = {}
    try:
        for label in labels:
            if label not in calls:
                continue
            captured.clear()
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
            async with AsyncSession(engine) as session:
                await calls[label](session)
            event.remove(engine.sync_engine, "before_cursor_execute", capture)
            if print_plans:
                print(f"\n### EXPLAIN (ANALYZE, BUFFERS): {label}")
            runs = []
            for attempt in range(3):
                total = 0.0
                async with engine.connect() as conn:
                    for statement, parameters in list(captured):
                        if statement.lstrip().upper().startswith("EXPLAIN"):
                            continue
                        plan = await conn.exec_driver_sql(
                            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                        )
                        lines = [line for (line,) in plan.all()]
                        for line in lines:
                            found = _TIME_LINE.match(line)
                            total += float(found.group(1)) if found else 0.0
                        if print_plans and attempt == 0:
                            print("\n" + " ".join(statement.split()))
                            print(f"  parameters: {parameters}")
                            for line in lines:
                                print("  " + line)
                runs.append(total)
            server_ms[label] = statistics.median(runs)
    finally:
        await engine.dispose()
    return server_ms


_TIME_LINE = re.compile(r"^(?:Planning|Execution) Time: ([0-9.]+) ms$")


# -- main -------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    deadline = Deadline(args.time_limit)
    size = "a reused database" if args.reuse_database else f"{args.images} images"
    print(f"query latency: {size}, {args.requests} requests each, {machine_line()}")
    rows = []
    with scratch_database(args) as database_url:
        if args.reuse_database:
            seeded = load_seeded(database_url, rng)
            print(f"reusing {len(seeded.ids)} images, {seeded.regions} regions", flush=True)
        else:
            seeded, seconds = seed(database_url, args.images, args.days, rng)
            print(
                f"seeded {len(seeded.ids)} images, {seeded.regions} regions in {seconds:.1f} s"
                f" (load {', '.join(f'{v:.2f}' for v in os.getloadavg())})",
                flush=True,
            )
        pages = -(-len(seeded.ids) // args.limit)
        deep_page = args.deep_page or max(1, int(pages * 0.9))
        with (
            agent_stack(args.server_url, database_url=database_url) as stack,
            httpx2.Client(timeout=300.0) as client,
        ):
            for label, make_path, targeted in endpoints(seeded, args.limit, deep_page, rng):
                if not targeted and args.slow_requests == 0:
                    continue
                warmup = args.warmup if targeted else 1
                time_endpoint(client, stack.agent_url, make_path, warmup, deadline)
                count = args.requests if targeted else args.slow_requests
                s = summarize(time_endpoint(client, stack.agent_url, make_path, count, deadline))
                result = verdict(s.p95_ms < TARGET_P95_MS) if targeted else "(no target)"
                rows.append((label, s.n, s.median_ms, s.p95_ms, s.max_ms, result))
                print(f"  {label}: p95 {s.p95_ms:.1f} ms", flush=True)
        print(f"timed; load {', '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
        server = asyncio.run(
            explain(database_url, [r[0] for r in rows], seeded, args.limit, args.explain)
        )
        print()
        print_table(
            ["endpoint", "n", "p50 ms", "p95 ms", "max ms", "SQL ms", "p95 < 50 ms"],
            [(*r[:5], server.get(r[0], "-"), r[5]) for r in rows],
        )
        print(
            "SQL ms: server time (planning + execution, EXPLAIN ANALYZE, median of 3) of the"
            " statements the agent's code sends for one such request"
        )
    print(f"finished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
