"""The agent's own overhead per image on the single-upload path (`POST /api/upload`).

Starts the reference model service and the agent (`python run.py`, fresh database
and data folder), uploads a few warm-up images, then sends N DeepPCB images one
at a time, alternating for each image between

* the agent: `POST {agent}/api/upload`, timed by the client (end to end), and
* the reference model service directly: `POST {model}/upload`, timed by the client.

It reports median and p95, in milliseconds, of

(a) agent end to end minus the answer's `model_service_seconds` (the agent's own
    measured round trip to the model service): validation, storage, database
    writes, result files and the HTTP hops the agent adds;
(b) agent end to end minus the median of the direct calls (a check of (a) that
    does not trust the agent's own timer);

and the agent's own CPU milliseconds per upload: the CPU time (user + system, psutil)
the agent process used during its uploads, divided by their number. The reference
service is a separate process, so its CPU is not in it (printed beside it).

Targets (issue 8): overhead (a) median < 20 ms and p95 < 30 ms; agent CPU <= 15 ms
per image. The verdicts are printed as PASS/MISS; the script never fails on a miss.
On a shared machine the CPU figure is steadier than wall-clock ones.

Usage::

    python benchmarks/agent_overhead.py [--images 100] [--warmup 5] [--deeppcb DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import httpx2
import numpy as np
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    BenchmarkError,
    Deadline,
    agent_stack,
    cpu_seconds,
    cpu_split,
    deeppcb_images,
    machine_line,
    print_table,
    summarize,
    verdict,
)

TARGET_MEDIAN_MS = 20.0
TARGET_P95_MS = 30.0
TARGET_CPU_MS = 15.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="timed uploads (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed uploads first (default 5)")
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB, help="DeepPCB folder")
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server")
    parser.add_argument(
        "--time-limit", type=float, default=900.0, help="give up after this many seconds"
    )
    return parser.parse_args()


def post_image(client: httpx2.Client, url: str, name: str, data: bytes) -> tuple[float, dict]:
    """POST one image as multipart field `image`; returns (client seconds, JSON answer).

    Raises:
        BenchmarkError: the answer was not 200.
    """
    started = time.perf_counter()
    response = client.post(url, files={"image": (name, data, "image/jpeg")})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchmarkError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response.json()


def main() -> int:
    args = parse_args()
    images = deeppcb_images(args.deeppcb, args.images + args.warmup)
    deadline = Deadline(args.time_limit)
    print(f"agent overhead: {args.images} images ({args.warmup} warm-up), {machine_line()}")
    with agent_stack(args.server_url) as stack, httpx2.Client(timeout=120.0) as client:
        agent_upload = f"{stack.agent_url}/api/upload"
        direct_upload = f"{stack.model_service_url}upload"
        for name, data in images[: args.warmup]:
            post_image(client, agent_upload, name, data)
            post_image(client, direct_upload, name, data)
        end_to_end: list[float] = []
        model_service: list[float] = []
        agent_total: list[float] = []
        direct: list[float] = []
        agent_cpu = service_cpu = agent_system = agent_idle_cpu = 0.0
        for name, data in images[args.warmup :]:
            deadline.check("agent_overhead")
            before = cpu_seconds(stack.agent_pid), cpu_seconds(stack.model_service_pid)
            system_before = cpu_split(stack.agent_pid)[1]
            seconds, answer = post_image(client, agent_upload, name, data)
            agent_cpu += cpu_seconds(stack.agent_pid) - before[0]
            agent_system += cpu_split(stack.agent_pid)[1] - system_before
            service_cpu += cpu_seconds(stack.model_service_pid) - before[1]
            end_to_end.append(seconds)
            model_service.append(float(answer["model_service_seconds"]))
            agent_total.append(float(answer["agent_total_seconds"]))
            idle_before = cpu_seconds(stack.agent_pid)
            seconds, _ = post_image(client, direct_upload, name, data)
            agent_idle_cpu += cpu_seconds(stack.agent_pid) - idle_before
            direct.append(seconds)

    e2e = np.asarray(end_to_end)
    overhead_a = e2e - np.asarray(model_service)
    direct_median = float(np.median(direct))
    overhead_b = e2e - direct_median
    rows = []
    for label, series in [
        ("agent end to end (client)", e2e),
        ("agent round trip to model service (model_service_seconds)", model_service),
        ("agent pipeline (agent_total_seconds)", agent_total),
        ("model service direct (client)", direct),
        ("(a) end to end - model_service_seconds", overhead_a),
        ("(b) end to end - direct median", overhead_b),
        (
            "  of (a): inside the pipeline (total - model_service)",
            np.asarray(agent_total) - np.asarray(model_service),
        ),
        (
            "  of (a): HTTP in/out (end to end - agent_total_seconds)",
            e2e - np.asarray(agent_total),
        ),
    ]:
        s = summarize(list(series))
        rows.append((label, s.n, s.median_ms, s.p95_ms, s.mean_ms, s.max_ms))
    print()
    print_table(["series", "n", "median ms", "p95 ms", "mean ms", "max ms"], rows)
    a, b = summarize(list(overhead_a)), summarize(list(overhead_b))
    cpu_ms = 1000.0 * agent_cpu / len(end_to_end)
    print()
    # The agent's background work (heartbeats, the queue's polling, the stalled-job
    # sweep) goes on whether images arrive or not: measured while the client talks to the
    # model service directly, then charged per second of upload.
    idle_rate = agent_idle_cpu / float(np.sum(direct))
    net_ms = cpu_ms - 1000.0 * idle_rate * float(np.mean(e2e))
    print(
        f"CPU per upload: agent {cpu_ms:.1f} ms, model service"
        f" {1000.0 * service_cpu / len(end_to_end):.1f} ms (psutil, user + system);"
        f" of the agent's, system {1000.0 * agent_system / len(end_to_end):.1f} ms"
    )
    print(
        f"agent background CPU while idle: {1000.0 * idle_rate:.1f} ms per second; agent CPU"
        f" per upload without it: {net_ms:.1f} ms"
    )
    print(
        f"targets: agent overhead median < {TARGET_MEDIAN_MS:.0f} ms, p95 <"
        f" {TARGET_P95_MS:.0f} ms; agent CPU <= {TARGET_CPU_MS:.0f} ms per image"
    )
    print(f"  (a) median {a.median_ms:.1f} ms: {verdict(a.median_ms < TARGET_MEDIAN_MS)}")
    print(f"  (a) p95    {a.p95_ms:.1f} ms: {verdict(a.p95_ms < TARGET_P95_MS)}")
    print(f"  (b) median {b.median_ms:.1f} ms: {verdict(b.median_ms < TARGET_MEDIAN_MS)}")
    print(f"  agent CPU  {cpu_ms:.1f} ms/image: {verdict(cpu_ms <= TARGET_CPU_MS)}")
    print(f"finished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
