"""Storing one inspection's rows: an image with many defect regions (`ImageRepository.add_result`).

Creates a fresh migrated database, then for each of --repeats rounds stores one image
with --regions regions spread over the six DeepPCB defect classes, through the agent's
own repository in one unit of work (commit included), the way a finished inspection is
stored. Reports milliseconds per image, median and p95: wall time, the CPU time of this
process (SQLAlchemy, psycopg, the agent's code) and of the PostgreSQL backend serving
the session (psutil on its pid: the server must be on this machine, else 0), and checks
the rows that arrived. On a loaded machine wall time includes waiting for a core; the
two CPU figures are what the work costs. The target (issue 8): 5,000 regions under 50 ms.

Usage::

    python benchmarks/region_insert.py [--regions 5000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from datetime import UTC, datetime

import psutil
from _harness import (
    DEFAULT_SERVER_URL,
    machine_line,
    print_table,
    summarize,
    temporary_database,
    verdict,
)
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.models.database import DefectClass, Image, Region
from app.models.model_service import Analysis
from app.services.database.session import sqlalchemy_url, unit_of_work
from app.services.history.repository import ImageRepository

TARGET_MS = 50.0
CLASSES = {"open": 1, "short": 2, "mousebite": 3, "spur": 4, "copper": 5, "pin_hole": 6}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=5000, help="regions per image")
    parser.add_argument("--repeats", type=int, default=20, help="images stored (timed)")
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server")
    return parser.parse_args()


def synthetic_analysis(regions: int, seed: int) -> Analysis:
    """A 640 x 640 analysis with `regions` regions over the six classes (validated)."""
    rng = random.Random(seed)
    by_class: dict[str, list[dict[str, object]]] = {name: [] for name in CLASSES}
    names = list(CLASSES)
    for i in range(regions):
        w, h = rng.randint(1, 40), rng.randint(1, 40)
        by_class[names[i % len(names)]].append(
            {
                "region_id": len(by_class[names[i % len(names)]]) + 1,
                "centroid": {"x": rng.uniform(0, 640), "y": rng.uniform(0, 640)},
                "bounding_box": {"x": rng.randint(0, 600), "y": rng.randint(0, 600)}
                | {"width": w, "height": h},
                "area_pixels": w * h,
                "perimeter": 2.0 * (w + h),
                "major_axis": float(max(w, h)),
                "minor_axis": float(min(w, h)),
                "circularity": rng.uniform(0.1, 1.0),
                "aspect_ratio": max(w, h) / min(w, h),
            }
        )
    classes = {
        name: {
            "class_id": CLASSES[name],
            "total_regions": len(found),
            "total_area_pixels": sum(int(r["area_pixels"]) for r in found),  # type: ignore[call-overload]
            "regions": found,
        }
        for name, found in by_class.items()
        if found
    }
    return Analysis.model_validate(
        {"image_shape": {"height": 640, "width": 640}, "classes": classes}
    )


def _server_cpu_s(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


async def run(database_url: str, regions: int, repeats: int) -> list[tuple[float, float, float]]:
    """(wall s, client CPU s, server CPU s) of storing each image (one warm-up round first,
    not returned)."""
    # One connection, so the backend whose CPU time is read is the one doing the work.
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    analyses = [synthetic_analysis(regions, seed) for seed in range(repeats + 1)]
    timings: list[tuple[float, float, float]] = []
    try:
        async with sessions() as session:
            backend = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        for n, analysis in enumerate(analyses):
            image = Image(
                img_unique_id=f"bench{n:06d}",
                image_height=640,
                image_width=640,
                processing_time_seconds=0.1,
                timestamp=datetime.now(UTC),
                input_image_path=f"inputs/bench{n:06d}.jpg",
            )
            wall, cpu, server = time.perf_counter(), time.process_time(), _server_cpu_s(backend)
            async with unit_of_work(sessions) as session:
                await ImageRepository(session).add_result(image, analysis)
            if n:
                timings.append(
                    (
                        time.perf_counter() - wall,
                        time.process_time() - cpu,
                        _server_cpu_s(backend) - server,
                    )
                )
        async with sessions() as session:
            stored = await session.scalar(select(func.count()).select_from(Region))
            classes = await session.scalar(select(func.count()).select_from(DefectClass))
        expected = regions * len(analyses)
        if stored != expected or classes != len(analyses) * min(regions, len(CLASSES)):
            raise SystemExit(f"stored {stored} regions / {classes} classes, expected {expected}")
    finally:
        await engine.dispose()
    return timings


def main() -> int:
    args = parse_args()
    print(f"region insert: {args.repeats} images of {args.regions} regions, {machine_line()}")
    with temporary_database(args.server_url) as database_url:
        timings = asyncio.run(run(database_url, args.regions, args.repeats))
    wall = summarize([t[0] for t in timings])
    cpu = summarize([t[1] for t in timings])
    server = summarize([t[2] for t in timings])
    print()
    print_table(
        ["per image", "n", "median ms", "p95 ms", "mean ms", "max ms"],
        [
            (
                "wall (add_result + commit)",
                wall.n,
                wall.median_ms,
                wall.p95_ms,
                wall.mean_ms,
                wall.max_ms,
            ),
            ("CPU of this process", cpu.n, cpu.median_ms, cpu.p95_ms, cpu.mean_ms, cpu.max_ms),
            (
                "CPU of the PostgreSQL backend",
                server.n,
                server.median_ms,
                server.p95_ms,
                server.mean_ms,
                server.max_ms,
            ),
        ],
    )
    print()
    print(
        f"target: {args.regions} regions stored in < {TARGET_MS:.0f} ms:"
        f" median {wall.median_ms:.1f} ms {verdict(wall.median_ms < TARGET_MS)},"
        f" p95 {wall.p95_ms:.1f} ms {verdict(wall.p95_ms < TARGET_MS)}"
    )
    print(f"finished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
