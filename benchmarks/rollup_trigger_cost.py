"""What the rollup triggers (migrations 20261202_0011, 0012) add to storing one inspection.

On a scratch database (created on --database-url's server, migrated, dropped at the
end) it stores --rounds images of 7 regions (the average of the query benchmark) and
of 5,000 regions (one class, centroids uniform over a 640 × 640 image) in one
transaction each, as the agent does — the ledger row (inserted `pending` beforehand,
untimed) updated to `succeeded` with its model version, then an `images` row, one
`classes` row, the regions in one INSERT — with the rollup triggers enabled, disabled
(`ALTER TABLE … DISABLE TRIGGER USER`: the foreign-key checks stay on), and enabled
again, and prints the median and p95 milliseconds of each. Only the database's work is
timed (no agent, no HTTP).

Usage::

    python benchmarks/rollup_trigger_cost.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import psycopg
from _harness import DEFAULT_SERVER_URL, machine_line, print_table, summarize, temporary_database


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="images stored per series")
    parser.add_argument(
        "--database-url",
        "--server-url",
        dest="server_url",
        default=DEFAULT_SERVER_URL,
        help="PostgreSQL server to create the scratch database on",
    )
    return parser.parse_args()


def store(conn: psycopg.Connection[Any], n: int, regions: int) -> float:
    """Store image number `n` with `regions` regions in one transaction; seconds."""
    img = f"20260301_000000_T{n:05d}"
    with conn.transaction():
        conn.execute(
            "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
            " size_bytes, media_type, status, attempts) VALUES (%s, 'f.png', 'in', 1,"
            " 'image/png', 'processing', 1)",
            (img,),
        )
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(
            "UPDATE inspections SET status = 'succeeded', model_version = 'bench-1.0',"
            " model_service_seconds = 0.2, total_seconds = 0.3, completed_at = now()"
            " WHERE img_unique_id = %s",
            (img,),
        )
        conn.execute(
            "INSERT INTO images VALUES (%s, 640, 640, 0.2, now(), 'in', 'c', 'm', 'o')", (img,)
        )
        row = conn.execute(
            "INSERT INTO classes (img_unique_id, class_id, class_name, total_regions,"
            " total_area_pixels) VALUES (%s, 1, 'open', %s, %s) RETURNING class_unique_id",
            (img, regions, regions),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x,"
            " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
            " major_axis, minor_axis, circularity, aspect_ratio)"
            " SELECT %s, %s, r, random() * 640, random() * 640, 0, 0, 1, 1, 1, 4, 1, 1, 1, 1"
            " FROM generate_series(1, %s) r",
            (row[0], img, regions),
        )
    return time.perf_counter() - started


def main() -> int:
    args = parse_args()
    print(f"rollup trigger cost: {args.rounds} images per series, {machine_line()}")
    rows = []
    count = 0
    with temporary_database(args.server_url) as url, psycopg.connect(url) as conn:
        for label, action in (("on", "ENABLE"), ("off", "DISABLE"), ("on (again)", "ENABLE")):
            for table in ("inspections", "images", "classes", "regions"):
                conn.execute(f"ALTER TABLE {table} {action} TRIGGER USER")
            conn.commit()
            for regions in (7, 5000):
                seconds = []
                for _ in range(args.rounds):
                    count += 1
                    seconds.append(store(conn, count, regions))
                s = summarize(seconds)
                rows.append((f"triggers {label}", regions, s.n, s.median_ms, s.p95_ms))
    print_table(["rollup triggers", "regions", "n", "median ms", "p95 ms"], rows)
    print(f"finished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
