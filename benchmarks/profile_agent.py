"""Where the agent's own CPU goes: py-spy samples the agent while it inspects images.

Starts the reference model service and the agent (`python run.py`, fresh database and
data folder) as separate processes, warms the agent up, then attaches py-spy
(`py-spy record --pid --gil --nonblocking`: the thread holding the GIL, i.e. Python-level
CPU; C code that releases the GIL, such as zlib or file writes, is not seen) to the agent
alone and runs

* `--uploads` single uploads (`POST /api/upload`, one at a time), then
* one `--batch`-image batch (`POST /api/upload/batch`, polled until done).

It prints the agent's CPU milliseconds per image for each path (psutil `cpu_times` of
the agent process; the model service's CPU is not in it) and the top functions by
self time and by inclusive time (share of the samples), so the hot spots can be quoted
before and after a change. The raw py-spy stacks are kept with `--keep FILE`.

Needs `py-spy` (requirements-test.txt) and permission to attach to a process of the same
user (Linux: `kernel.yama.ptrace_scope` 0 or 1 as the parent's user, or root).

Usage::

    python benchmarks/profile_agent.py [--uploads 40] [--batch 100] [--top 25] [--keep F]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    BenchmarkError,
    Deadline,
    agent_stack,
    cpu_seconds,
    deeppcb_images,
    machine_line,
    print_table,
)
from agent_overhead import post_image
from batch_throughput import run_agent_batch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=40, help="single uploads (default 40)")
    parser.add_argument("--batch", type=int, default=100, help="images of the batch (default 100)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="also write py-spy's raw stacks here")
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB, help="DeepPCB folder")
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server")
    parser.add_argument(
        "--time-limit", type=float, default=900.0, help="give up after this many seconds"
    )
    return parser.parse_args()


def py_spy() -> str:
    """The py-spy executable (next to this Python, or on PATH).

    Raises:
        BenchmarkError: py-spy is not installed.
    """
    beside = Path(sys.executable).parent / ("py-spy.exe" if os.name == "nt" else "py-spy")
    found = str(beside) if beside.is_file() else shutil.which("py-spy")
    if found is None:
        raise BenchmarkError("py-spy is not installed: pip install -r requirements-test.txt")
    return found


class Sampler:
    """`py-spy record --pid` on one process, writing raw (collapsed) stacks to a file."""

    def __init__(self, pid: int, out: Path, rate: int) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                py_spy(),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                # Only the thread holding the GIL: Python-level CPU. (Without it, py-spy
                # here also counts threads idling in Condition.wait and epoll as active.)
                "--gil",
                # Read the process without pausing it 200 times a second.
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # let it attach
        if self.process.poll() is not None:
            raise BenchmarkError(f"py-spy did not start: {self.process.stderr.read()!r}")  # type: ignore[union-attr]

    def stop(self) -> dict[str, int]:
        """Stop sampling; returns {collapsed stack: samples}."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        stacks: dict[str, int] = {}
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] = stacks.get(stack, 0) + int(count)
        return stacks


def _frame(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)` (lines differ within a function)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def top_functions(stacks: dict[str, int], top: int) -> tuple[list[tuple], list[tuple], int]:
    """(by self time, by inclusive time, total samples): rows (function, samples, %)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = sum(stacks.values())
    for stack, count in stacks.items():
        frames = [_frame(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def rows(counter: collections.Counter[str]) -> list[tuple]:
        return [(name, n, 100.0 * n / max(1, total)) for name, n in counter.most_common(top)]

    return rows(own), rows(inclusive), total


def main() -> int:
    args = parse_args()
    images = deeppcb_images(args.deeppcb, max(args.uploads, args.batch) + 5)
    deadline = Deadline(args.time_limit)
    print(f"agent profile: {args.uploads} uploads + a {args.batch}-image batch, {machine_line()}")
    scratch = Path(tempfile.mkdtemp(prefix="aoi_profile_"))
    try:
        with agent_stack(args.server_url) as stack, httpx2.Client(timeout=300.0) as client:
            upload_url = f"{stack.agent_url}/api/upload"
            for name, data in images[:5]:  # warm-up: imports, connections, caches
                post_image(client, upload_url, name, data)
            run_agent_batch(client, stack.agent_url, images[:8], 0.2, deadline)
            sampler = Sampler(stack.agent_pid, scratch / "stacks.txt", args.rate)
            cpu = {}
            before = cpu_seconds(stack.agent_pid)
            for name, data in images[: args.uploads]:
                deadline.check("profile uploads")
                post_image(client, upload_url, name, data)
            middle = cpu_seconds(stack.agent_pid)
            if args.batch:
                run_agent_batch(client, stack.agent_url, images[: args.batch], 0.2, deadline)
            after = cpu_seconds(stack.agent_pid)
            stacks = sampler.stop()
            cpu["single upload"] = (middle - before) / max(1, args.uploads)
            cpu["batch"] = (after - middle) / max(1, args.batch)
        if args.keep:
            shutil.copyfile(scratch / "stacks.txt", args.keep)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print("agent CPU per image (psutil cpu_times of the agent process, sampler attached):")
    for path, seconds in cpu.items():
        print(f"  {path}: {seconds * 1000:.1f} ms")
    own, inclusive, total = top_functions(stacks, args.top)
    print(f"\n{total} samples at {args.rate}/s (GIL holder)\n\nby self time:\n")
    print_table(["function", "samples", "%"], own)
    print("\nby inclusive time:\n")
    print_table(["function", "samples", "%"], inclusive)
    print(f"\nfinished: load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
