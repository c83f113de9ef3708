"""Peak memory of the agent under ten concurrent maximum-size uploads.

Starts the reference model service and the agent (`python run.py`, fresh database and
data folder, default settings but a long SEGFORMER_TIMEOUT_S so the big inferences
finish), builds one RGB PNG of the largest accepted size (MAX_IMAGE_PIXELS, default
50,000,000 pixels: 7071 x 7071, tiled from a DeepPCB image so it is a real board and
compresses like one), and sends it ten times at once to `POST /api/upload`.

While the uploads run, the agent's resident memory is sampled every 50 ms; its peak
(the kernel's VmHWM of the agent process, Linux) is printed in MB with the answers'
status codes. Target (issue 6): under 1.5 GB. The model service is a separate process
and is not counted.

Usage::

    python benchmarks/upload_memory.py [--uploads 10] [--pixels 50000000] [--deeppcb DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import threading
import time
from pathlib import Path

import httpx2
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    BenchmarkError,
    agent_stack,
    machine_line,
    print_table,
    verdict,
)
from PIL import Image

TARGET_MB = 1536


def board_png(pixels: int, deeppcb: Path) -> bytes:
    """An RGB PNG of about `pixels` pixels (square), tiled from the first DeepPCB image
    (or a synthetic board pattern when the data set is absent)."""
    side = math.isqrt(pixels)
    sources = sorted((deeppcb / "images").glob("*.jpg"))
    if sources:
        with Image.open(sources[0]) as tile_file:
            tile = tile_file.convert("RGB")
    else:
        tile = Image.new("RGB", (640, 640), (240, 240, 240))
        for i in range(0, 640, 40):
            tile.paste((30, 30, 30), (i, 0, i + 12, 640))
    canvas = Image.new("RGB", (side, side))
    for y in range(0, side, tile.height):
        for x in range(0, side, tile.width):
            canvas.paste(tile, (x, y))
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of process `pid` from /proc/PID/status, MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise BenchmarkError(f"/proc/{pid}/status has no {field}")


async def send_all(url: str, image: bytes, uploads: int, timeout_s: float) -> list[int]:
    async with httpx2.AsyncClient(base_url=url, timeout=timeout_s) as client:

        async def one(i: int) -> int:
            response = await client.post(
                "/api/upload", files={"image": (f"board_{i}.png", image, "image/png")}
            )
            return response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(uploads))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--pixels", type=int, default=50_000_000)
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--time-limit", type=float, default=900.0)
    args = parser.parse_args()

    print(f"# Upload memory — {machine_line()}")
    image = board_png(args.pixels, args.deeppcb)
    side = math.isqrt(args.pixels)
    print(f"image: {side} x {side} RGB PNG, {len(image) / 2**20:.1f} MB; {args.uploads} at once")
    env = {"SEGFORMER_TIMEOUT_S": str(args.time_limit), "MAX_IMAGE_PIXELS": str(args.pixels)}
    with agent_stack(args.server_url, extra_env=env) as stack:
        idle_mb = rss_mb(stack.agent_pid)
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(rss_mb(stack.agent_pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            statuses = asyncio.run(send_all(stack.agent_url, image, args.uploads, args.time_limit))
        finally:
            stop.set()
            sampler.join()
        elapsed = time.monotonic() - started
        peak_mb = rss_mb(stack.agent_pid, "VmHWM")
    print_table(
        ["uploads", "answers", "agent RSS idle (MB)", "peak RSS (MB)", "seconds"],
        [
            [
                args.uploads,
                ", ".join(f"{s}×{statuses.count(s)}" for s in sorted(set(statuses))),
                idle_mb,
                peak_mb,
                elapsed,
            ]
        ],
    )
    print(f"peak RSS {peak_mb:.0f} MB < {TARGET_MB} MB: {verdict(peak_mb < TARGET_MB)}")


if __name__ == "__main__":
    main()
