"""Latency of the golden crop (`GET /api/images/{id}/golden/crop`) with the registration
cached: what the viewer asks for each time the reviewer moves to a defect.

Starts the reference model service and the agent (`python run.py`, fresh database and
data folder), adds the DeepPCB templates of --boards boards as golden images
(`PUT /api/golden/{id}`), inspects those boards, asks `GET /api/images/{id}/golden` once
per board (registration, timed apart: the first request pays it), then times --requests
crop requests over the boards' defect boxes, each box grown by the viewer's margin (24 px,
at least 64 x 64 px), one at a time from one client.

Prints p50/p95/max in milliseconds of the first registration and of the cached crops.
Target (issue 15): the golden crop shown within 150 ms of moving to a defect; the crop
request is most of that (the browser then decodes a small PNG and draws three canvases).

Usage::

    python benchmarks/golden_crop.py [--boards 5] [--requests 200] [--deeppcb DIR]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import httpx2
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    agent_stack,
    machine_line,
    print_table,
    summarize,
    verdict,
)

TARGET_MS = 150.0
MARGIN_PX, MIN_SIDE_PX = 24, 64


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB)
    parser.add_argument("--boards", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    return parser.parse_args()


def crop_box(box: dict[str, int], width: int, height: int) -> dict[str, int]:
    """The viewer's crop around a defect box (app/static/js/golden_compare.js `cropBox`)."""
    side = max(max(box["width"], box["height"]) + 2 * MARGIN_PX, MIN_SIDE_PX)
    w, h = min(side, width), min(side, height)
    x = min(max(round(box["x"] + box["width"] / 2 - w / 2), 0), width - w)
    y = min(max(round(box["y"] + box["height"] / 2 - h / 2), 0), height - h)
    return {"x": x, "y": y, "width": w, "height": h}


def main() -> int:
    args = parse_args()
    boards = sorted((args.deeppcb / "images").glob("*.jpg"))[: args.boards]
    print(f"golden crop: {len(boards)} boards, {args.requests} crops, {machine_line()}")
    with (
        agent_stack(args.server_url) as stack,
        httpx2.Client(base_url=stack.agent_url, timeout=120.0) as client,
    ):
        boxes: list[tuple[str, dict[str, int]]] = []
        first: list[float] = []
        for path in boards:
            template = (args.deeppcb / "templates" / path.name).read_bytes()
            client.put(
                f"/api/golden/{path.stem}", files={"image": (path.name, template)}
            ).raise_for_status()
            answer = client.post("/api/upload", files={"image": (path.name, path.read_bytes())})
            answer.raise_for_status()
            img_id = answer.json()["img_unique_id"]
            started = time.perf_counter()
            client.get(f"/api/images/{img_id}/golden").raise_for_status()
            first.append(time.perf_counter() - started)
            regions = client.get(f"/api/images/{img_id}/regions").json()
            size = (regions["image_width"], regions["image_height"])
            for group in regions["classes"]:
                for region in group["regions"]:
                    boxes.append((img_id, crop_box(region["bounding_box"], *size)))
        crops: list[float] = []
        for img_id, box in itertools.islice(itertools.cycle(boxes), args.requests):
            started = time.perf_counter()
            client.get(f"/api/images/{img_id}/golden/crop", params=box).raise_for_status()
            crops.append(time.perf_counter() - started)
    rows = []
    for label, series in [("first GET /golden (registers)", first), ("crop, cached", crops)]:
        s = summarize(series)
        rows.append((label, s.n, s.median_ms, s.p95_ms, s.max_ms))
    print_table(["request", "n", "p50 ms", "p95 ms", "max ms"], rows)
    p95 = summarize(crops).p95_ms
    print(f"target: crop p95 <= {TARGET_MS:.0f} ms: {verdict(p95 <= TARGET_MS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
