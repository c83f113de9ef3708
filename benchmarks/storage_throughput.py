"""What storing inspections costs the agent, per storage backend.

For each backend — a folder (temporary), and an S3 store: moto's S3 server (an
*emulator*, started on a loopback port; its own CPU is not counted but shares the
machine) or a real store named by --s3-url — stores --inspections inspections as
the agent does (the input kept from a scratch file, the three result PNGs and the
analysis JSON written together), --concurrency at once, then reads each back (the
analysis JSON whole, the overlay streamed). Prints inspections/s and the agent
process's CPU ms per inspection for writing and for reading; no target (a figure for
docs/deployment.md's sizing). Sizes are those of a 640x640 DeepPCB inspection.

Usage::

    python benchmarks/storage_throughput.py [--inspections 300] [--concurrency 8]
        [--s3-url s3://bucket/prefix --s3-endpoint http://minio:9000]   (AWS_* variables)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx2
import numpy as np
from _harness import machine_line
from PIL import Image as PILImage

from app.config import Settings
from app.services.model_service.reference import free_loopback_port
from app.services.storage import Storage, open_storage


def _png(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0])) > 0.995).astype(np.uint8) * 255
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    PILImage.fromarray((rng.random((640, 640)) * 255).astype(np.uint8)).save(
        buffer, "JPEG", quality=90
    )
    return buffer.getvalue()


@contextmanager
def moto_server() -> Iterator[tuple[str, str]]:
    """moto's S3 server on a loopback port with a fresh bucket: (endpoint, bucket)."""
    import boto3

    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx2.get(url, timeout=1)
                break
            except httpx2.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
        }.items():
            os.environ.setdefault(name, value)
        bucket = f"bench-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket=bucket)
        yield url, bucket
    finally:
        process.terminate()
        process.wait(30)


async def run(storage: Storage, count: int, concurrency: int) -> dict[str, float]:
    """Store `count` inspections and read them back; timings and CPU per inspection."""
    storage.ensure_directories()
    input_bytes = _jpeg()
    images = {"combined": _png(1, (1280, 640)), "mask": _png(2, (640, 640))}
    images["overlay"] = _png(3, (640, 640))
    analysis = {"image_shape": [640, 640], "classes": {"short": {"regions": [{}] * 20}}}
    accepted = datetime.now(UTC)
    ids = [f"{accepted:%Y%m%d_%H%M%S}_{i:06d}_{secrets.token_hex(3)}" for i in range(count)]
    limiter = anyio.CapacityLimiter(concurrency)
    keys: dict[str, str] = {}

    async def store(img_id: str) -> None:
        async with limiter:
            scratch = storage.new_incoming_path()
            await anyio.Path(scratch).write_bytes(input_bytes)
            key = storage.input_key(img_id, accepted, "board.jpg", ".jpg")
            await storage.keep_input(scratch, key, "image/jpeg")
            await storage.write_results(img_id, accepted, images, analysis)
            keys[img_id] = key

    async def read(img_id: str) -> None:
        async with limiter:
            await storage.get(storage.result_key(img_id, accepted, "analysis"))
            stream = await storage.open_stream(storage.result_key(img_id, accepted, "overlay"))
            async for _ in stream.chunks:
                pass

    out: dict[str, float] = {}
    for phase, job in (("write", store), ("read", read)):
        cpu, wall = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as group:
            for img_id in ids:
                group.start_soon(job, img_id)
        out[f"{phase}_per_s"] = count / (time.perf_counter() - wall)
        out[f"{phase}_cpu_ms"] = (time.process_time() - cpu) * 1000 / count
    for img_id in ids:
        await storage.remove_inspection_files(keys[img_id], img_id, accepted)
    await storage.aclose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inspections", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--s3-url", help="a real store (else moto's emulator)")
    parser.add_argument("--s3-endpoint", help="S3_ENDPOINT_URL of --s3-url")
    args = parser.parse_args()
    print(f"storage throughput: {args.inspections} inspections, {machine_line()}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(_env_file=None, data_dir=Path(folder))  # type: ignore[call-arg]
        rows.append(
            ("folder", asyncio.run(run(open_storage(settings), args.inspections, args.concurrency)))
        )
        if args.s3_url:
            s3 = settings.model_copy(update={"s3_endpoint_url": args.s3_endpoint})
            result = asyncio.run(
                run(open_storage(s3, args.s3_url), args.inspections, args.concurrency)
            )
            rows.append((args.s3_url, result))
        else:
            with moto_server() as (endpoint, bucket):
                s3 = settings.model_copy(update={"s3_endpoint_url": endpoint})
                store = open_storage(s3, f"s3://{bucket}/bench")
                result = asyncio.run(run(store, args.inspections, args.concurrency))
                rows.append(("S3 (moto emulator)", result))
    print()
    print(
        "| backend | write inspections/s | write CPU ms/inspection | read inspections/s"
        " | read CPU ms/inspection |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(
            f"| {name} | {r['write_per_s']:.0f} | {r['write_cpu_ms']:.1f}"
            f" | {r['read_per_s']:.0f} | {r['read_cpu_ms']:.1f} |"
        )
    print(f"finished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
