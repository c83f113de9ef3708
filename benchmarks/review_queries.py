"""Latency of the review queries on a database of inspected images, some reviewed.

Seeds a fresh, migrated database like `query_latency.py` (--images images over the last
30 days, 3-12 regions each, 70 % in batches of 50), then gives a verdict to every region
of the oldest --reviewed share of the images (default 50 %: the queue's worst case is
walking past reviewed boards) and VACUUM ANALYZE. Then it times in-process, over the
agent's own service code and one connection pool, --requests calls (default 50) of

* `review/next` over everything (no filter: the queue walks past every reviewed board)
* `review/next` of one batch (the web UI's default)
* `review/next` of one day
* `dashboard/review` of the last 30 days
* `PUT verdict` (one verdict, its history row and the board's progress)
* History's review filters: `GET /api/images?review_state=unreviewed|reviewed|
  has_false_calls` and `disposition=pass` (page 1 of 24, with the review badges), and
  `GET /api/query/defects?review_state=has_false_calls` (page 1 of 50)

The reviewed boards also get a disposition: `pass` without a `real` verdict, else
`repair`. Verdicts and dispositions are loaded without their triggers, then
`review_boards` is rebuilt (`aoi_review_boards_rebuild()`).

and prints p50/p95/max in milliseconds and the load average. No targets: the figures
show how the queue's cost follows the filter (docs/review.md, "Cost at scale").

Usage::

    python benchmarks/review_queries.py [--images 10000] [--reviewed 0.5] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from _harness import (
    DEFAULT_SERVER_URL,
    machine_line,
    print_table,
    summarize,
    temporary_database,
)
from query_latency import seed

from app.config import Settings
from app.models.review import VerdictIn
from app.services.database.session import create_engine, create_session_factory, unit_of_work
from app.services.history.queries import Links, QueryService
from app.services.history.repository import DefectFilters, ImageFilters
from app.services.review.repository import ReviewFilters
from app.services.review.service import ReviewService


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--reviewed", type=float, default=0.5, help="share of images reviewed")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def review_oldest(database_url: str, share: float) -> tuple[int, float]:
    """Verdicts on every region of the oldest `share` of the images (random verdicts,
    one in four a real defect); returns (verdicts, seconds)."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Without the per-row triggers; `review_boards` is rebuilt in one pass after.
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            """
            WITH oldest AS (
                SELECT img_unique_id FROM images ORDER BY timestamp
                LIMIT (SELECT ceil(count(*) * %s) FROM images)
            )
            INSERT INTO region_verdicts (region_unique_id, img_unique_id, verdict, reviewer)
            SELECT r.region_unique_id, r.img_unique_id,
                   CASE WHEN random() < 0.25 THEN 'real' ELSE 'false_call' END, 'bench'
            FROM regions r JOIN oldest o USING (img_unique_id)
            """,
            (share,),
        )
        count = conn.execute("SELECT count(*) FROM region_verdicts").fetchone()
        conn.execute(
            """
            INSERT INTO image_dispositions (img_unique_id, disposition, reviewer)
            SELECT img_unique_id,
                   CASE WHEN bool_or(verdict = 'real') THEN 'repair' ELSE 'pass' END, 'bench'
            FROM region_verdicts GROUP BY img_unique_id
            """
        )
        conn.execute("SET session_replication_role = DEFAULT")
        conn.execute("SELECT aoi_review_boards_rebuild()")
        conn.execute("VACUUM ANALYZE")
    return int(count[0] if count else 0), time.perf_counter() - started


async def run(database_url: str, ids: list[str], args: argparse.Namespace) -> list[tuple[Any, ...]]:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = create_engine(settings, database_url)
    sessions = create_session_factory(engine)
    rng = random.Random(args.seed)
    with psycopg.connect(database_url) as conn:
        batches = [b for (b,) in conn.execute("SELECT batch_id FROM batches")]
        regions = [r for (r,) in conn.execute("SELECT region_unique_id FROM regions")]
    today = datetime.now(UTC).date()

    def viewer(img_id: str) -> str:
        return img_id

    def history(**filters: str) -> Callable[[ReviewService], Awaitable[Any]]:
        return lambda s: QueryService(s.reviews.session, Links("http://agent")).list_images(
            ImageFilters(**filters),  # type: ignore[arg-type]
            1,
            24,
        )

    cases: list[tuple[str, Callable[[ReviewService], Awaitable[Any]]]] = [
        ("review/next, no filter", lambda s: s.next_image(ReviewFilters(), None, viewer)),
        (
            "review/next, one batch",
            lambda s: s.next_image(ReviewFilters(batch_id=rng.choice(batches)), None, viewer),
        ),
        (
            "review/next, one day",
            lambda s: s.next_image(
                ReviewFilters(*(2 * [today - timedelta(days=rng.randint(0, 29))])), None, viewer
            ),
        ),
        (
            "dashboard/review, 30 days",
            lambda s: s.figures(ReviewFilters(today - timedelta(days=29), today)),
        ),
        (
            "PUT verdict",
            lambda s: s.set_verdict(rng.choice(regions), VerdictIn(verdict="unsure"), "bench"),
        ),
        ("images, no filter (baseline)", history()),
        ("images review_state=unreviewed", history(review_state="unreviewed")),
        ("images review_state=reviewed", history(review_state="reviewed")),
        ("images review_state=has_false_calls", history(review_state="has_false_calls")),
        ("images disposition=pass", history(disposition="pass")),
        (
            "query/defects has_false_calls",
            lambda s: QueryService(s.reviews.session, Links("http://agent")).query_defects(
                DefectFilters(review_state="has_false_calls"), 1, 50
            ),
        ),
    ]
    rows = []
    try:
        for label, call in cases:
            seconds = []
            for _ in range(args.requests + 3):
                started = time.perf_counter()
                async with unit_of_work(sessions) as session:
                    await call(ReviewService(session))
                seconds.append(time.perf_counter() - started)
            s = summarize(seconds[3:])  # the first three warm the pool and caches
            rows.append((label, s.n, s.median_ms, s.p95_ms, s.max_ms))
    finally:
        await engine.dispose()
    return rows


def main() -> int:
    args = parse_args()
    print(f"review queries: {args.images} images, {args.reviewed:.0%} reviewed, {machine_line()}")
    with temporary_database(args.server_url) as database_url:
        seeded, seconds = seed(database_url, args.images, 30, random.Random(args.seed))
        ids = seeded.ids
        print(f"seeded {len(ids)} images, {seeded.regions} regions by COPY in {seconds:.1f} s")
        verdicts, seconds = review_oldest(database_url, args.reviewed)
        print(
            f"{verdicts} verdicts on the oldest {args.reviewed:.0%} of the images"
            f" in {seconds:.1f} s"
        )
        rows = asyncio.run(run(database_url, ids, args))
    print()
    print_table(["query", "n", "p50 ms", "p95 ms", "max ms"], rows)
    print(f"finished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
