"""What shadow model services cost the primary inspection: p95 upload latency with
SHADOW_SAMPLE_RATE=0 and =1 (docs/models.md; target < 5 % added).

Starts, on one fresh database: the primary reference model service (classical engine)
and the agent (`python run.py`) pinned to CPU 0, and a second reference service as the
shadow (golden-board engine with the DeepPCB templates: another model version) pinned to
CPU 1 (os.sched_setaffinity, here only: the shadow "on its own core"). The agent is
started once per setting (SHADOW_SERVICE_URLS the same each time, only the sample rate
differs), in the order 0, 1, 0, 1 (--rounds 2), so drift of a shared machine falls on
both. Each run uploads --requests DeepPCB images one after the other (after --warmup
untimed ones) with `POST /api/upload` and times each request client side; with rate 1
it then waits until every shadow answer is stored (and reports how long that took and
how many failed).

Prints p50/p95 in milliseconds per setting (all rounds pooled) and the p95 added by
shadowing, with PASS/MISS against < 5 % (never fails hard).

With --worker-process the agent runs no queue worker itself (RUN_WORKER_IN_PROCESS=false)
and a separate `aoi-agent worker` process, pinned to CPU 1 with the shadow service, runs
the shadow jobs: the shadow's whole cost (the agent's share too) on its own core; the
agent only queues the jobs.

Usage::

    python benchmarks/shadow_overhead.py [--requests 150] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import psycopg
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    REPO_ROOT,
    Child,
    agent_process,
    deeppcb_images,
    machine_line,
    pin_process,
    print_table,
    summarize,
    temporary_database,
    verdict,
    workspace,
)

from app.services.model_service.reference import start_reference_service

TARGET_ADDED = 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="shadow jobs in a separate worker process pinned to CPU 1",
    )
    return parser.parse_args()


@contextlib.contextmanager
def worker_process(env: dict[str, str], log: Path):  # type: ignore[no-untyped-def]
    """`aoi-agent worker` as a child process pinned to CPU 1; stopped with SIGINT."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from app.cli import main; main()", "worker"],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        time.sleep(1.0)
        pin_process(process.pid, {1})
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def service(log: Path, cpu: int, extra_env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    started = start_reference_service(log, extra_env=extra_env)
    try:
        pin_process(started.process.pid, {cpu})
        yield Child(started.url, started.process.pid)
    finally:
        started.stop()


def run(
    args: argparse.Namespace,
    db: str,
    workdir: Path,
    primary: Child,
    shadow: Child,
    rate: float,
    images: list[tuple[str, bytes]],
) -> tuple[list[float], float, int]:
    """One agent with SHADOW_SAMPLE_RATE=`rate`: upload latencies (seconds), then the
    seconds until every shadow answer was stored, and failed shadow answers."""
    env = {
        "SHADOW_SERVICE_URLS": shadow.url,
        "SHADOW_SAMPLE_RATE": str(rate),
        "SHADOW_CONCURRENCY": "2",
    }
    with psycopg.connect(db, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM model_answers").fetchone()[0]  # type: ignore[index]
    data = workdir / f"data-{rate}-{time.monotonic_ns()}"
    with contextlib.ExitStack() as stack:
        if args.worker_process:
            env["RUN_WORKER_IN_PROCESS"] = "false"
            stack.enter_context(
                worker_process(
                    {
                        **env,
                        "DATABASE_URL": db,
                        "SEGFORMER_SERVICE_URL": primary.url,
                        "DATA_DIR": str(data),
                        "LOG_LEVEL": "WARNING",
                    },
                    workdir / "worker.log",
                )
            )
        agent = stack.enter_context(agent_process(db, primary.url, data, env))
        pin_process(agent.pid, {0})
        seconds: list[float] = []
        with httpx2.Client(base_url=agent.url, timeout=60) as client:
            for n, (name, content) in enumerate(images[: args.warmup + args.requests]):
                started = time.perf_counter()
                response = client.post("/api/upload", files={"image": (name, content)})
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"upload failed: {response.status_code} {response.text}")
                if n >= args.warmup:
                    seconds.append(elapsed)
        done_at = time.perf_counter()
        expected = before + (args.warmup + args.requests if rate >= 1 else 0)
        with psycopg.connect(db, autocommit=True) as conn:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                got = conn.execute("SELECT count(*) FROM model_answers").fetchone()[0]  # type: ignore[index]
                if got >= expected:
                    break
                time.sleep(0.5)
            failed = conn.execute(
                "SELECT count(*) FROM model_answers WHERE status = 'failed'"
            ).fetchone()[0]  # type: ignore[index]
        drained = time.perf_counter() - done_at
    return seconds, drained, int(failed)


def main() -> int:
    args = parse_args()
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        print("needs Linux and two CPUs (the shadow service is pinned to its own core)")
        return 0
    print(
        f"shadow overhead, {args.requests} uploads per run, {args.rounds} rounds; {machine_line()}"
    )
    images = deeppcb_images(args.deeppcb, args.warmup + args.requests)
    templates = args.deeppcb / "templates"
    if not templates.is_dir():
        templates = REPO_ROOT / "samples" / "deeppcb" / "templates"
    by_rate: dict[float, list[float]] = {0.0: [], 1.0: []}
    drains: list[tuple[float, int]] = []
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(workspace())
        db = stack.enter_context(temporary_database(args.server_url))
        primary = stack.enter_context(service(workdir / "primary.log", 0))
        shadow = stack.enter_context(
            service(
                workdir / "shadow.log",
                1,
                {
                    "REFERENCE_SERVICE_ENGINE": "template",
                    "REFERENCE_SERVICE_TEMPLATES_DIR": str(templates),
                },
            )
        )
        for _ in range(args.rounds):
            for rate in (0.0, 1.0):
                seconds, drained, failed = run(args, db, workdir, primary, shadow, rate, images)
                by_rate[rate].extend(seconds)
                if rate:
                    drains.append((drained, failed))
                s = summarize(seconds)
                print(
                    f"  rate {rate:g}: p50 {s.median_ms:.1f} ms, p95 {s.p95_ms:.1f} ms", flush=True
                )
    off, on = summarize(by_rate[0.0]), summarize(by_rate[1.0])
    added = (on.p95_ms - off.p95_ms) / off.p95_ms
    print_table(
        ["SHADOW_SAMPLE_RATE", "uploads", "p50 ms", "p95 ms", "max ms"],
        [
            ["0", off.n, off.median_ms, off.p95_ms, off.max_ms],
            ["1", on.n, on.median_ms, on.p95_ms, on.max_ms],
        ],
    )
    print(
        f"p95 added by shadowing: {100 * added:+.1f} % ({verdict(added < TARGET_ADDED)},"
        f" target < {100 * TARGET_ADDED:g} %); shadow answers stored"
        f" {', '.join(f'{d:.1f} s' for d, _ in drains)} after the last upload,"
        f" {sum(f for _, f in drains)} failed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
