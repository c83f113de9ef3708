"""Memory of the agent while it streams `GET /api/export/dataset.zip` over many images.

The agent inspects the six sample boards (real uploads); the six stored inspections are
cloned by SQL into `--images` inspections (as `replay_resume.py` does: same stored files,
classes and regions) spread over 20 lots and 30 boards' serials, and two thirds of the
regions get a verdict (`real`, `false_call` in turn). Then the whole dataset ZIP is
downloaded to a file while a thread samples the agent's resident memory (VmRSS, /proc)
every 50 ms, and `aoi-agent dataset verify` checks it. Target: the growth stays under
100 MB however many images (inputs are streamed from the store, COCO entries and the
file list are spooled). Linux only (/proc).

Usage::

    python benchmarks/dataset_memory.py [--images 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import httpx2
import psycopg
from _harness import (
    DEFAULT_SERVER_URL,
    REPO_ROOT,
    agent_process,
    machine_line,
    reference_service,
    temporary_database,
    verdict,
    workspace,
)
from replay_resume import clone, upload_samples
from upload_memory import rss_mb

TARGET_GROWTH_MB = 100.0


def judge_and_place(database_url: str, lots: int = 20, serials: int = 30) -> None:
    """Board context for every inspection (a lot and a serial each) and verdicts on two
    thirds of the regions (`real` and `false_call` in turn), straight in the database."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO inspection_contexts (img_unique_id, board_serial, lot)"
            " SELECT img_unique_id, 'SN-' || (row_number() OVER (ORDER BY img_unique_id)"
            f" % {serials}), 'LOT-' || (row_number() OVER (ORDER BY img_unique_id) % {lots})"
            " FROM inspections ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO region_verdicts (region_unique_id, img_unique_id, verdict, reviewer)"
            " SELECT region_unique_id, img_unique_id,"
            " CASE WHEN region_unique_id % 3 = 0 THEN 'real' ELSE 'false_call' END, 'bench'"
            " FROM regions WHERE region_unique_id % 3 <> 2"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    args = parser.parse_args()
    print(f"dataset memory: {args.images} images, {machine_line()}", flush=True)
    with (
        workspace() as workdir,
        temporary_database(args.server_url) as database_url,
        reference_service(workdir / "reference-service.log") as model,
        agent_process(database_url, model.url, workdir / "data") as agent,
    ):
        sources = upload_samples(agent.url)
        clone(database_url, sources, args.images)
        judge_and_place(database_url)
        before = peak = rss_mb(agent.pid)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mb(agent.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        target = workdir / "dataset.zip"
        started = time.perf_counter()
        size = 0
        try:
            with (
                httpx2.Client(timeout=1800) as client,
                client.stream("GET", agent.url + "/api/export/dataset.zip") as response,
                target.open("wb") as out,
            ):
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    size += len(chunk)
        finally:
            done.set()
            sampler.join()
        seconds = time.perf_counter() - started
        check = subprocess.run(
            [sys.executable, "-m", "app.cli", "dataset", "verify", str(target)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
        )
        growth = peak - before
        print(
            f"| images | ZIP | seconds | agent RSS before (MB) | peak (MB) | growth (MB) |\n"
            f"| --- | --- | --- | --- | --- | --- |\n"
            f"| {args.images:,} | {size / 2**20:.1f} MB | {seconds:.1f} | {before:.0f} |"
            f" {peak:.0f} | {growth:.0f} |"
        )
        print(check.stdout.strip() or check.stderr.strip())
        print(
            f"target growth < {TARGET_GROWTH_MB:.0f} MB and the ZIP verifies:"
            f" {verdict(growth < TARGET_GROWTH_MB and check.returncode == 0)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
