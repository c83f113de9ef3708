"""What the Prometheus metrics cost: the HTTP instrumentation per request, and rendering
the `/metrics` text.

In-process and network-free (the ASGI app is called directly), so the figures are the
metrics' own CPU cost, not HTTP: --requests calls of a trivial route on a FastAPI app
with and without the agent's instrumentation (the same `Instrumentator` setup as
`app.main`), and --renders renders of the metrics text after recording 1,000 inspections
over 10 defect classes and 4 model services. Prints p50/p95 in microseconds. No target:
the figures are for docs/metrics.md.

Usage::

    python benchmarks/metrics_overhead.py [--requests 5000] [--renders 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import numpy as np
from _harness import machine_line, print_table
from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

from app.services.system import metrics


def app_with(instrumented: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/api/images/{img_unique_id}")
    async def image(img_unique_id: str) -> dict[str, str]:
        return {"img_unique_id": img_unique_id}

    if instrumented:
        Instrumentator(excluded_handlers=["^/metrics$"]).add(
            metrics.HTTP_INSTRUMENTATION
        ).instrument(app)
    return app


async def call(app: FastAPI) -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/images/20260225_103045_ABC123",
        "raw_path": b"/api/images/20260225_103045_ABC123",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        "root_path": "",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(scope, receive, send)


async def time_requests(app: FastAPI, count: int) -> list[float]:
    for _ in range(200):
        await call(app)
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        await call(app)
        seconds.append(time.perf_counter() - started)
    return seconds


def us(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e6, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--renders", type=int, default=200)
    args = parser.parse_args()
    print(machine_line())
    plain = asyncio.run(time_requests(app_with(False), args.requests))
    instrumented = asyncio.run(time_requests(app_with(True), args.requests))

    classes = [f"class_{i}" for i in range(10)]
    for i in range(1000):
        metrics.record_inspection_stored({classes[i % 10]: 3})
    for s in range(4):
        for _ in range(250):
            metrics.MODEL_SERVICE_DURATION.labels(service=f"http://gpu-{s}:8080/").observe(0.2)
    extra = metrics.scrape_time_families({"todo": 5, "doing": 2}, 10**12)
    renders = []
    for _ in range(args.renders):
        started = time.perf_counter()
        body = metrics.render(extra)
        renders.append(time.perf_counter() - started)

    print_table(
        ["what", "p50 µs", "p95 µs"],
        [
            ["GET, no instrumentation", f"{us(plain, 50):.0f}", f"{us(plain, 95):.0f}"],
            ["GET, instrumented", f"{us(instrumented, 50):.0f}", f"{us(instrumented, 95):.0f}"],
            [
                "instrumentation per request",
                f"{us(instrumented, 50) - us(plain, 50):.0f}",
                f"{us(instrumented, 95) - us(plain, 95):.0f}",
            ],
            [
                f"render /metrics ({len(body) // 1024} KB)",
                f"{us(renders, 50):.0f}",
                f"{us(renders, 95):.0f}",
            ],
        ],
    )


if __name__ == "__main__":
    main()
