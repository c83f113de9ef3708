"""Speed of the model comparison (`GET /api/models/compare`, docs/models.md) over
--images inspections (default 100,000) answered by two model versions.

Seeds a scratch database (created on the PostgreSQL server of --database-url /
AOI_BENCH_DATABASE_URL, migrated, dropped at the end) with set-based INSERT ... SELECT
over generate_series inside PostgreSQL (no row crosses the wire), triggers off
(`session_replication_role = replica`, as benchmarks/query_latency.py loads by COPY):

* --images images over the last 30 days, each with a `succeeded` ledger row of the
  primary version `bench-A`, 3 primary regions in 1-3 of the six DeepPCB classes; a fifth
  of the regions carry a verdict (4 `real` for 1 `false_call`);
* one succeeded shadow answer of version `bench-B` per image with 3 regions: two matched
  to the image's first two primary regions, one unmatched (a twentieth judged `real`);

then the comparison's kept counts (`compare_counts`, which the agent's triggers keep:
`aoi_compare_counts_rebuild()`, migration 20261208_0028) and VACUUM ANALYZE. It then
runs the agent's own service (`ModelsService.compare`: the per-class counts, the image
count and the newest 50 disagreements, one statement) in process over a real session,
--runs times after one untimed warm-up, unfiltered and over one week, and prints the
median and the slowest with PASS/MISS against < 2 s (never fails hard). The figures are
checked against the seeding's own arithmetic.

Usage::

    python benchmarks/model_compare.py [--images 100000] [--runs 5] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from datetime import date, timedelta

import psycopg
from _harness import DEFAULT_SERVER_URL, machine_line, print_table, temporary_database, verdict

from app.config import Settings
from app.services.database.session import create_engine, create_session_factory
from app.services.models.repository import _COMPARE_SQL, CompareFilters, _compare_cte
from app.services.models.service import ModelsService

TARGET_S = 2.0
CLASSES = "ARRAY['open','short','mousebite','spur','spurious_copper','pin_hole']"
START = date(2026, 1, 1)
DAYS = 30

SEED_SQL = f"""
SET session_replication_role = replica;
INSERT INTO images (img_unique_id, image_height, image_width, processing_time_seconds,
                    timestamp, input_image_path)
SELECT '20260101_000000_' || lpad(n::text, 6, '0'), 640, 640, 0.1,
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + (n * interval '1 second' * {DAYS} * 86400 / %(n)s),
       'uploads/x.jpg'
FROM generate_series(1, %(n)s) n;
INSERT INTO inspections (img_unique_id, original_filename, input_image_path, size_bytes,
                         media_type, status, attempts, created_at, updated_at, model_name,
                         model_version)
SELECT img_unique_id, 'x.jpg', 'uploads/x.jpg', 1, 'image/jpeg', 'succeeded', 1, timestamp,
       timestamp, 'bench', 'bench-A'
FROM images;
INSERT INTO classes (img_unique_id, class_id, class_name, total_regions, total_area_pixels)
SELECT DISTINCT '20260101_000000_' || lpad(n::text, 6, '0'), ((n + j * j) %% 6) + 1,
       ({CLASSES})[((n + j * j) %% 6) + 1], 0, 0
FROM generate_series(1, %(n)s) n, generate_series(0, 2) j;
INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x, centroid_y,
                     bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,
                     major_axis, minor_axis, circularity, aspect_ratio)
SELECT c.class_unique_id, c.img_unique_id, j + 1, 10 * j + 5, 5, 10 * j, 0, 10, 10, 100,
       40, 10, 10, 0.8, 1
FROM generate_series(1, %(n)s) n, generate_series(0, 2) j
JOIN LATERAL (SELECT class_unique_id, img_unique_id FROM classes
              WHERE img_unique_id = '20260101_000000_' || lpad(n::text, 6, '0')
                AND class_id = ((n + j * j) %% 6) + 1) c ON TRUE;
UPDATE classes c SET total_regions = r.n, total_area_pixels = r.area
FROM (SELECT class_unique_id, count(*) AS n, sum(area_pixels) AS area FROM regions
      GROUP BY class_unique_id) r
WHERE r.class_unique_id = c.class_unique_id;
INSERT INTO region_verdicts (region_unique_id, img_unique_id, verdict, reviewer)
SELECT region_unique_id, img_unique_id,
       CASE WHEN region_unique_id %% 25 = 0 THEN 'false_call' ELSE 'real' END, 'bench'
FROM regions WHERE region_unique_id %% 5 = 0;
INSERT INTO model_answers (img_unique_id, role, model_service_url, model_name,
                           model_version, status, created_at)
SELECT img_unique_id, 'shadow', 'http://shadow/', 'bench', 'bench-B', 'succeeded', timestamp
FROM images;
INSERT INTO answer_regions (answer_id, region_id, class_name, bbox_x, bbox_y, bbox_width,
                            bbox_height, area_pixels, centroid_x, centroid_y,
                            matched_region_unique_id, match_iou, verdict)
SELECT a.answer_id, r.region_id, c.class_name, r.bbox_x, r.bbox_y, 10, 10, 100, 5, 5,
       r.region_unique_id, 0.9, NULL
FROM model_answers a
JOIN regions r ON r.img_unique_id = a.img_unique_id AND r.region_id <= 2
JOIN classes c ON c.class_unique_id = r.class_unique_id;
INSERT INTO answer_regions (answer_id, region_id, class_name, bbox_x, bbox_y, bbox_width,
                            bbox_height, area_pixels, centroid_x, centroid_y, verdict)
SELECT answer_id, 3, ({CLASSES})[(answer_id %% 6) + 1], 300, 300, 10, 10, 100, 305, 305,
       CASE WHEN answer_id %% 20 = 0 THEN 'real' END
FROM model_answers;
UPDATE model_answers SET region_count = 3, matched_count = 2, primary_region_count = 3,
                         overlapping_count = 0, primary_overlapping_count = 0;
SET session_replication_role = DEFAULT;
SELECT aoi_compare_counts_rebuild();
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", dest="server_url", default=DEFAULT_SERVER_URL)
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also print EXPLAIN (ANALYZE, BUFFERS) of the unfiltered statement",
    )
    return parser.parse_args()


def explain(url: str) -> None:
    """Print the plan of the unfiltered comparison with its timings and buffers."""
    cte, params = _compare_cte(CompareFilters())
    sql = "EXPLAIN (ANALYZE, BUFFERS) " + cte + _COMPARE_SQL
    with psycopg.connect(url) as conn:
        conn.execute("SET jit = off")  # as ComparisonRepository._without_jit
        conn.execute("SET work_mem = '64MB'")
        named = {**params, "a": "bench-A", "b": "bench-B", "limit": 50}
        # The statement's :name parameters in psycopg's style (not the casts' ::type).
        query = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
        for (line,) in conn.execute(query, named):  # type: ignore[call-overload]
            print("   ", line)


def seed(url: str, count: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SEED_SQL.split(";\n"):
            if statement.strip():
                conn.execute(statement, {"n": count})  # type: ignore[arg-type]
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


async def time_compare(url: str, filters: CompareFilters, runs: int) -> tuple[list[float], object]:
    engine = create_engine(Settings(_env_file=None), url)  # type: ignore[call-arg]
    sessions = create_session_factory(engine)
    seconds: list[float] = []
    result: object = None
    try:
        for run in range(runs + 1):
            async with sessions() as session:
                started = time.perf_counter()
                result = await ModelsService(session).compare(
                    "bench-A", "bench-B", filters, 50, 0.5, lambda i: f"/results/{i}"
                )
                if run:  # the first run warms the caches
                    seconds.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    return seconds, result


def main() -> int:
    args = parse_args()
    print(f"model comparison over {args.images:,} inspections; {machine_line()}")
    with temporary_database(args.server_url) as url:
        loaded = seed(url, args.images)
        with psycopg.connect(url) as conn:
            regions, answer_regions = conn.execute(
                "SELECT (SELECT count(*) FROM regions), (SELECT count(*) FROM answer_regions)"
            ).fetchone() or (0, 0)
        print(
            f"  seeded {regions:,} primary and {answer_regions:,} shadow regions in {loaded:.1f} s"
        )
        rows = []
        for label, filters in (
            ("all 30 days", CompareFilters()),
            ("one week", CompareFilters(START + timedelta(days=7), START + timedelta(days=13))),
        ):
            seconds, result = asyncio.run(time_compare(url, filters, args.runs))
            slowest = max(seconds)
            rows.append(
                [
                    label,
                    f"{result.images:,}",  # type: ignore[attr-defined]
                    f"{statistics.median(seconds):.3f}",
                    f"{slowest:.3f}",
                    verdict(slowest < TARGET_S),
                ]
            )
            if label == "all 30 days":
                totals = result.totals  # type: ignore[attr-defined]
                # Every image: 3 primary regions, 2 of them matched, 1 unmatched shadow one.
                assert result.images == args.images  # type: ignore[attr-defined]
                assert totals.matched == 2 * args.images, totals
                assert totals.a_only == args.images, totals
                assert totals.b_only == args.images, totals
        print_table(["scope", "images", "median s", "slowest s", f"< {TARGET_S:g} s"], rows)
        if args.explain:
            explain(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
