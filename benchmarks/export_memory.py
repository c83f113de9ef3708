"""Memory of the agent while it streams `GET /api/export/regions.csv` over many regions.

Seeds a fresh, migrated database with the synthetic inspections of
`query_latency.py` (--images images, 3-12 regions each), starts the reference model
service and the agent (`python run.py`), then downloads the whole regions CSV while a
thread samples the agent's resident memory (VmRSS, /proc) every 50 ms. Prints the
rows, bytes, seconds, the agent's RSS before and its peak during the download, and
the growth per 100,000 rows. Target: the growth stays under 100 MB however many rows
(constant memory: rows stream from a server-side cursor, 1,000 at a time). Linux only
(/proc).

Usage::

    python benchmarks/export_memory.py [--images 20000]
"""

from __future__ import annotations

import argparse
import random
import threading
import time

import httpx2
from _harness import DEFAULT_SERVER_URL, agent_stack, machine_line, temporary_database, verdict
from query_latency import seed
from upload_memory import rss_mb

TARGET_GROWTH_MB = 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"export memory: {args.images} images, {machine_line()}")
    with temporary_database(args.server_url) as database_url:
        seeded, seconds = seed(database_url, args.images, 30, random.Random(args.seed))
        print(
            f"seeded {len(seeded.ids)} images, {seeded.regions} regions by COPY in {seconds:.1f} s"
        )
        with agent_stack(args.server_url, database_url=database_url) as stack:
            before = rss_mb(stack.agent_pid)
            peak = before
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_mb(stack.agent_pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            lines = size = 0
            with (
                httpx2.Client(timeout=600) as client,
                client.stream("GET", stack.agent_url + "/api/export/regions.csv") as response,
            ):
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    lines += chunk.count(b"\n")
            elapsed = time.perf_counter() - started
            done.set()
            sampler.join()
    rows = lines - 1
    growth = peak - before
    print(f"rows {rows} (expected {seeded.regions}), {size / 1e6:.1f} MB of CSV in {elapsed:.1f} s")
    print(f"agent RSS before {before:.0f} MB, peak during the export {peak:.0f} MB")
    print(
        f"growth {growth:.0f} MB ({growth / max(rows, 1) * 100_000:.1f} MB per 100,000 rows):"
        f" {verdict(growth < TARGET_GROWTH_MB)} (target < {TARGET_GROWTH_MB:.0f} MB)"
    )
    return 0 if rows == seeded.regions else 1


if __name__ == "__main__":
    raise SystemExit(main())
