"""Batch throughput: a batch through the agent vs. the same images straight to the model service.

Starts the reference model service and the agent (`python run.py`, fresh database
and data folder, SEGFORMER_MAX_CONCURRENCY = --concurrency). Each round times

* direct: the N images (DeepPCB, cycling when N > 150) POSTed straight to the
  reference service's `/upload` by a thread pool with --concurrency requests in
  flight; wall time from the first send to the last answer;
* agent: one `POST /api/upload/batch` with the N images, then `GET
  /api/batches/{id}` every --poll-interval seconds until `done`; wall time from
  the start of the upload to the first poll that sees `done` (so it can read up
  to one poll interval late).

Rounds alternate the order (direct first, then agent first) so a drift of the
machine does not favour one side. Per path it also
reports the CPU seconds used by the agent, the model service and this client
(Linux /proc), which shows where the time goes on a small machine. --pin-cpus
puts the model service on a CPU of its own (the agent and PostgreSQL on the
others), approximating production, where the model service runs on its own host. The ratio
agent/direct of the summed wall times is checked against the target <= 1.05, and the
agent's CPU per image (its process's user + system time over the agent rounds, polls
included, / images; the reference service is a separate process) against <= 15 ms
(issue 8; PASS/MISS; never fails hard).

Usage::

    python benchmarks/batch_throughput.py [--images 100] [--concurrency 4] [--rounds 2] \
        [--pin-cpus]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import psycopg
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    BenchmarkError,
    Deadline,
    agent_stack,
    cpu_seconds,
    deeppcb_images,
    machine_line,
    pin_process,
    print_table,
    verdict,
)

TARGET_RATIO = 1.05
TARGET_CPU_MS = 15.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="images per batch (default 100)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="SEGFORMER_MAX_CONCURRENCY and direct pool size"
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (default 2)")
    parser.add_argument("--warmup", type=int, default=8, help="images of the warm-up round")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="seconds between polls")
    parser.add_argument(
        "--pin-cpus",
        action="store_true",
        help="pin the model service to the last CPU and the agent to the others (Linux),"
        " so the agent's own CPU use does not slow the model service (as on separate hosts)",
    )
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB, help="DeepPCB folder")
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server")
    parser.add_argument(
        "--time-limit", type=float, default=1200.0, help="give up after this many seconds"
    )
    return parser.parse_args()


def run_direct(
    client: httpx2.Client, url: str, images: list[tuple[str, bytes]], concurrency: int
) -> float:
    """POST every image to the model service, `concurrency` at a time; returns wall seconds.

    Raises:
        BenchmarkError: an answer was not 200.
    """

    def one(item: tuple[str, bytes]) -> int:
        name, data = item
        return client.post(url, files={"image": (name, data, "image/jpeg")}).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        codes = list(pool.map(one, images))
    elapsed = time.perf_counter() - started
    bad = [c for c in codes if c != 200]
    if bad:
        raise BenchmarkError(f"model service answered {len(bad)} non-200 statuses: {bad[:5]}")
    return elapsed


def run_agent_batch(
    client: httpx2.Client,
    agent_url: str,
    images: list[tuple[str, bytes]],
    poll_interval_s: float,
    deadline: Deadline,
) -> tuple[float, float, dict]:
    """Upload a batch and poll until done; returns (accept seconds, total seconds, status).

    Raises:
        BenchmarkError: the upload was refused or the time limit passed.
    """
    files = [("images", (name, data, "image/jpeg")) for name, data in images]
    started = time.perf_counter()
    response = client.post(f"{agent_url}/api/upload/batch", files=files)
    accepted = time.perf_counter() - started
    if response.status_code != 202:
        raise BenchmarkError(f"batch upload answered {response.status_code}: {response.text[:300]}")
    batch_id = response.json()["batch_id"]
    while True:
        deadline.check("batch_throughput")
        status = client.get(f"{agent_url}/api/batches/{batch_id}").json()
        if status["done"]:
            return accepted, time.perf_counter() - started, status
        time.sleep(poll_interval_s)


def jobs_in_flight(database_url: str, batch_id: str) -> tuple[float, float]:
    """(mean images in flight, mean pipeline seconds per image) of a batch, from the ledger.

    Mean in flight = sum of the images' `total_seconds` (the agent's pipeline time) /
    (last `completed_at` - batch `created_at`). Finished jobs are deleted from the queue,
    so the ledger is the record that is left.
    """
    query = """
        SELECT sum(i.total_seconds),
               extract(epoch FROM max(i.completed_at) - min(b.created_at)), count(*)
        FROM inspections i JOIN batches b ON b.batch_id = i.batch_id
        WHERE i.batch_id = %s AND i.total_seconds IS NOT NULL
    """
    with psycopg.connect(database_url) as conn:
        busy, span, count = conn.execute(query, (batch_id,)).fetchone() or (0, 0, 0)
    if not count or not span:
        return 0.0, 0.0
    return float(busy) / float(span), float(busy) / count


def main() -> int:
    args = parse_args()
    images = deeppcb_images(args.deeppcb, args.images)
    warmup = deeppcb_images(args.deeppcb, args.warmup)
    deadline = Deadline(args.time_limit)
    print(
        f"batch throughput: {args.images} images, concurrency {args.concurrency},"
        f" {args.rounds} rounds, {machine_line()}"
    )
    env = {"SEGFORMER_MAX_CONCURRENCY": str(args.concurrency)}
    limits = httpx2.Limits(max_connections=args.concurrency + 2)
    rows: list[tuple[object, ...]] = []
    walls: dict[str, float] = {"agent": 0.0, "direct": 0.0}
    agent_cpu = {"agent": 0.0, "direct": 0.0}
    with (
        agent_stack(args.server_url, extra_env=env) as stack,
        httpx2.Client(timeout=300.0, limits=limits) as client,
    ):
        direct_url = f"{stack.model_service_url}upload"
        if args.pin_cpus:
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) < 2:
                raise BenchmarkError("--pin-cpus needs at least 2 CPUs")
            pin_process(stack.model_service_pid, {cpus[-1]})
            pin_process(stack.agent_pid, set(cpus[:-1]))
            print(f"pinned: model service to CPU {cpus[-1]}, agent to CPUs {cpus[:-1]}")
        run_direct(client, direct_url, warmup, args.concurrency)
        run_agent_batch(client, stack.agent_url, warmup, args.poll_interval, deadline)
        for round_no in range(1, args.rounds + 1):
            order = ["direct", "agent"] if round_no % 2 else ["agent", "direct"]
            for side in order:
                cpu_before = (cpu_seconds(stack.agent_pid), cpu_seconds(stack.model_service_pid))
                client_cpu = time.process_time()
                accepted = in_flight = per_image = None
                if side == "direct":
                    wall = run_direct(client, direct_url, images, args.concurrency)
                else:
                    accepted, wall, status = run_agent_batch(
                        client, stack.agent_url, images, args.poll_interval, deadline
                    )
                    in_flight, per_image = jobs_in_flight(stack.database_url, status["batch_id"])
                    if status["failed"]:
                        print(f"  round {round_no}: {status['failed']} images failed in the agent")
                walls[side] += wall
                agent_cpu[side] += cpu_seconds(stack.agent_pid) - cpu_before[0]
                rows.append(
                    (
                        round_no,
                        side,
                        wall,
                        args.images / wall,
                        "-" if accepted is None else accepted,
                        "-" if in_flight is None else in_flight,
                        "-" if per_image is None else per_image,
                        cpu_seconds(stack.agent_pid) - cpu_before[0],
                        cpu_seconds(stack.model_service_pid) - cpu_before[1],
                        time.process_time() - client_cpu,
                    )
                )
    print()
    print_table(
        [
            "round",
            "path",
            "wall s",
            "img/s",
            "upload (202) s",
            "in flight (mean)",
            "agent s/image",
            "agent CPU s",
            "model service CPU s",
            "client CPU s",
        ],
        [tuple(f"{v:.2f}" if isinstance(v, float) else v for v in row) for row in rows],
    )
    ratio = walls["agent"] / walls["direct"]
    print()
    print(
        f"wall time agent/direct over all rounds: {walls['agent']:.2f} s / "
        f"{walls['direct']:.2f} s = {ratio:.3f} (target <= {TARGET_RATIO:.2f}):"
        f" {verdict(ratio <= TARGET_RATIO)}"
    )
    cpu_ms = 1000.0 * agent_cpu["agent"] / (args.images * args.rounds)
    idle_ms = 1000.0 * agent_cpu["direct"] / (args.images * args.rounds)
    print(
        f"agent CPU per image in the agent rounds: {cpu_ms:.1f} ms (target <="
        f" {TARGET_CPU_MS:.0f} ms): {verdict(cpu_ms <= TARGET_CPU_MS)}; while idle during"
        f" the direct rounds it used {idle_ms:.1f} ms per image-time (heartbeats, queue)"
    )
    print(f"finished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
