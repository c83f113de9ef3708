"""IPC-CFX publishing (issue 14): verdict → message on the broker latency, the agent's
CPU per inspection for publishing, and a broker outage during inspections: are all
`UnitsInspected` delivered after it, in order, none lost?

    python benchmarks/cfx_outage.py [--images 1000] [--outage 600] [--verdicts 40]

Needs the machine's RabbitMQ with its AMQP 1.0 plugin (`--broker`, default
amqp://guest:guest@127.0.0.1:5672) and `rabbitmqctl` (as root) to stop and start it. The
agent (`python run.py`) runs with the reference model service and a throw-away database,
and publishes to a queue of its own (`/queue/aoi-cfx-bench-…`) that a real AMQP 1.0
receiver (proton) reads in a thread, noting when each message arrives.

1. Latency: `--verdicts` verdicts (PUT, one at a time) on the regions of a few boards;
   for each, the time from the PUT's answer to the verification `UnitsInspected` arriving.
2. Outage: `rabbitmqctl stop_app`; `--images` DeepPCB images in one batch; once every one
   is stored and `--outage` seconds have passed, `start_app`. Then every `UnitsInspected`
   must arrive, once, in the outbox's order (the order the inspections were stored).
   The agent's CPU while it drains, less its idle CPU over as long, per inspection, is
   the publisher's cost; the writer's cost (building the three messages of an inspection
   with 10 defects) is timed in this process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    BenchmarkError,
    agent_stack,
    cpu_seconds,
    deeppcb_images,
    machine_line,
    print_table,
    summarize,
    verdict,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=600.0, help="seconds the broker is down")
    parser.add_argument("--verdicts", type=int, default=40)
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--time-limit", type=float, default=3600.0, help="seconds")
    return parser.parse_args()


class Receiver(threading.Thread):
    """A proton receiver in a thread: every envelope with its arrival time (monotonic);
    attaches again after the broker restarts."""

    def __init__(self, broker: str, address: str) -> None:
        super().__init__(daemon=True)
        self.broker, self.address = broker, address
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.stopping = False
        self.attached = threading.Event()

    def run(self) -> None:
        from proton.utils import BlockingConnection

        while not self.stopping:
            try:
                connection = BlockingConnection(self.broker, timeout=5)
                receiver = connection.create_receiver(self.address, credit=1000)
                self.attached.set()
                while not self.stopping:
                    try:
                        message = receiver.receive(timeout=1)
                    except Exception as exc:
                        if type(exc).__name__ == "Timeout":
                            continue
                        raise
                    receiver.accept()
                    envelope = json.loads(bytes(message.body).decode())
                    with self.lock:
                        self.received.append((time.monotonic(), envelope))
            except Exception:
                time.sleep(0.5)

    def named(self, suffix: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, e) for t, e in self.received if e["MessageName"].endswith(suffix)]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=180)


def writer_cost_ms() -> float:
    """Median ms to build and serialise one inspection's three messages (10 defects)."""
    from datetime import UTC, datetime

    from app.services.cfx import messages

    defects = [messages.CfxDefect(i, "short", 10 * i, 20, 30, 40, 900) for i in range(10)]
    times = []
    for _ in range(2000):
        began = time.perf_counter()
        tx, now = uuid.uuid4(), datetime.now(UTC)
        for name, body in (
            (messages.WORK_STARTED, messages.work_started(tx, "SN1")),
            (
                messages.UNITS_INSPECTED,
                messages.units_inspected(
                    transaction_id=tx,
                    unit_identifier="SN1",
                    inspection_id="x",
                    defects=defects,
                    overlay_url="http://a/b?c=d",
                    started_at=now,
                    ended_at=now,
                    test_procedure="m 1",
                ),
            ),
            (messages.WORK_COMPLETED, messages.work_completed(tx, "SN1", "Completed")),
        ):
            json.dumps(messages.envelope(name, body, source="h", timestamp=now, unique_id=tx))
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> int:
    args = parse_args()
    images = deeppcb_images(args.deeppcb, args.images)
    address = f"/queue/aoi-cfx-bench-{uuid.uuid4().hex[:8]}"
    print(
        f"CFX: {args.images} images, broker down {args.outage:g} s, {args.verdicts} verdicts,"
        f" {machine_line()}"
    )
    receiver = Receiver(args.broker, address)
    receiver.start()
    if not receiver.attached.wait(30):
        raise BenchmarkError(f"could not attach to {address} on {args.broker}")
    env = {
        "CFX_BROKER_URL": args.broker,
        "CFX_ADDRESS": address,
        "CFX_HANDLE": "bench.line1.aoi-agent",
        "CFX_RETRY_MAX_S": "5",
    }
    began = time.monotonic()
    with (
        agent_stack(args.server_url, extra_env=env) as stack,
        httpx2.Client(base_url=stack.agent_url, timeout=600) as client,
    ):
        # 1. verdict → message latency.
        latencies: list[float] = []
        board = 0
        while len(latencies) < args.verdicts:
            name, data = images[board % len(images)]
            board += 1
            answer = client.post("/api/upload", files={"image": (name, data, "image/jpeg")})
            if answer.status_code != 200:
                raise BenchmarkError(f"upload answered {answer.status_code}: {answer.text[:300]}")
            img = answer.json()["img_unique_id"]
            regions = client.get(f"/api/images/{img}/regions").json()
            ids = [r["region_unique_id"] for g in regions["classes"] for r in g["regions"]]
            for region in ids[: args.verdicts - len(latencies)]:
                seen = len(receiver.named("UnitsInspected"))
                put = client.put(
                    f"/api/regions/{region}/verdict",
                    json={"verdict": "real"},
                    headers={"X-Reviewer": "bench"},
                )
                answered = time.monotonic()
                if put.status_code != 200:
                    raise BenchmarkError(f"verdict answered {put.status_code}")
                while True:
                    got = receiver.named("UnitsInspected")[seen:]
                    hit = [
                        t
                        for t, e in got
                        if e["MessageBody"]["InspectionMethod"] == "Human"
                        and e["MessageBody"]["InspectedUnits"][0]["Inspections"][0]["DefectsFound"][
                            0
                        ]["UniqueIdentifier"]
                        == str(region)
                    ]
                    if hit:
                        latencies.append(hit[0] - answered)
                        break
                    if time.monotonic() - answered > 30:
                        raise BenchmarkError(f"no verification message for region {region}")
                    time.sleep(0.005)
        # 2. outage.
        before = len(receiver.named("UnitsInspected"))
        rabbitmqctl("stop_app")
        stopped = time.monotonic()
        try:
            urls = []
            for first in range(0, len(images), 100):  # MAX_BATCH_SIZE
                files = [("images", (n, d, "image/jpeg")) for n, d in images[first : first + 100]]
                answer = client.post("/api/upload/batch", files=files)
                if answer.status_code != 202:
                    raise BenchmarkError(
                        f"batch answered {answer.status_code}: {answer.text[:300]}"
                    )
                urls.append(f"/api/batches/{answer.json()['batch_id']}")
            while True:
                if time.monotonic() - began > args.time_limit:
                    raise BenchmarkError("the batches did not finish within --time-limit")
                done = all(client.get(url).json()["done"] for url in urls)
                if done and time.monotonic() - stopped >= args.outage:
                    break
                time.sleep(2.0)
            health = client.get("/api/health").json()["outbox"]
            idle_from, idle_cpu = time.monotonic(), cpu_seconds(stack.agent_pid)
            time.sleep(10)
            idle_rate = (cpu_seconds(stack.agent_pid) - idle_cpu) / (time.monotonic() - idle_from)
        finally:
            rabbitmqctl("start_app")
        resumed = time.monotonic()
        cpu0 = cpu_seconds(stack.agent_pid)
        want = args.images
        while len(receiver.named("UnitsInspected")) - before < want:
            if time.monotonic() - resumed > 600:
                break
            time.sleep(0.2)
        drained = time.monotonic()
        drain_cpu = cpu_seconds(stack.agent_pid) - cpu0 - idle_rate * (drained - resumed)
        with psycopg.connect(stack.database_url) as db:
            order = [
                row[0]
                for row in db.execute(
                    "SELECT ordering_key FROM outbox WHERE message_name LIKE '%%UnitsInspected'"
                    " AND payload->'MessageBody'->>'InspectionMethod' = 'AOI'"
                    " ORDER BY id OFFSET %s",
                    (board,),
                )
            ]
    receiver.stopping = True
    arrived = [
        e["MessageBody"]["InspectedUnits"][0]["UnitIdentifier"]
        for _, e in receiver.named("UnitsInspected")[before:]
        if e["MessageBody"]["InspectionMethod"] == "AOI"
    ]
    unique = {e["UniqueID"] for _, e in receiver.named("UnitsInspected")[before:]}
    lost = len(set(order) - set(arrived))
    in_order = arrived == order
    lat = summarize(latencies)
    per_inspection_ms = drain_cpu / max(1, len(arrived)) * 1000
    writer_ms = writer_cost_ms()
    print(
        f"while down: backlog {health['backlog_messages']}, oldest {health['oldest_age_s']:.0f} s"
    )
    print()
    print_table(
        ["verdicts", "p50 ms", "p95 ms", "max ms"],
        [(lat.n, lat.median_ms, lat.p95_ms, lat.max_ms)],
    )
    print()
    print_table(
        [
            "inspections",
            "broker down s",
            "UnitsInspected after",
            "lost",
            "repeats",
            "in order",
            "drain s",
            "publisher CPU ms/inspection",
            "writer CPU ms/inspection",
        ],
        [
            (
                len(order),
                resumed - stopped,
                len(arrived),
                lost,
                len(arrived) - len(set(arrived)) if len(unique) == len(arrived) else "dup ids",
                in_order,
                drained - resumed,
                per_inspection_ms,
                writer_ms,
            )
        ],
    )
    print()
    print(f"verdict → broker p95 < 1 s: {verdict(lat.p95_ms < 1000)}")
    print(f"all delivered, in order, 0 lost: {verdict(lost == 0 and in_order)}")
    print(f"publishing CPU < 2 ms per inspection: {verdict(per_inspection_ms + writer_ms < 2)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
