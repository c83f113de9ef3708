"""Shared parts of the speed benchmarks: a throw-away database, the reference model
service and the agent (`python run.py`) as child processes, DeepPCB images, and
latency statistics.

Everything runs on loopback; every context manager removes what it created
(database dropped, child processes stopped, temporary folder deleted).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import psutil
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from app.services.database.migrations import upgrade_database  # noqa: E402
from app.services.model_service.reference import (  # noqa: E402
    free_loopback_port,
    start_reference_service,
)

DEFAULT_DEEPPCB = REPO_ROOT.parent / "shared" / "datasets" / "deeppcb"
DEFAULT_SERVER_URL = os.environ.get(
    "AOI_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AGENT_STARTUP_TIMEOUT_S = 120.0
# The checkout whose `run.py` is started as the agent (default: this one). Pointing it at
# another checkout (e.g. the main branch) runs the same benchmark against that code, so a
# change can be compared before/after under the same load of a shared machine.
AGENT_ROOT = Path(os.environ.get("AOI_BENCH_AGENT_ROOT") or REPO_ROOT).resolve()


class BenchmarkError(RuntimeError):
    """A part of the benchmark set-up failed or a run exceeded its time limit."""


# -- images -----------------------------------------------------------------------------


def deeppcb_images(folder: Path, count: int) -> list[tuple[str, bytes]]:
    """`count` DeepPCB test images as (file name, JPEG bytes), sorted by name, cycling.

    Raises:
        BenchmarkError: the folder has no `images/*.jpg`.
    """
    paths = sorted((folder / "images").glob("*.jpg"))
    if not paths:
        raise BenchmarkError(f"no DeepPCB images under {folder / 'images'}; pass --deeppcb DIR")
    loaded = [(p.name, p.read_bytes()) for p in paths[: min(count, len(paths))]]
    return [loaded[i % len(loaded)] for i in range(count)]


# -- statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Latency statistics of one series, milliseconds."""

    n: int
    median_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float


def summarize(seconds: Sequence[float]) -> Summary:
    """Statistics of durations given in seconds (percentiles by linear interpolation)."""
    ms = np.asarray(seconds, dtype=float) * 1000.0
    return Summary(
        n=int(ms.size),
        median_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
    )


def verdict(passed: bool) -> str:
    """PASS or MISS (benchmarks report against targets, they never fail)."""
    return "PASS" if passed else "MISS"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table (so it can be pasted into docs/benchmarks.md as is)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def _cell(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def machine_line() -> str:
    """Date, CPU count, load average, Python version and the agent's checkout (when it is
    not this one), for the report header."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    agent = "" if AGENT_ROOT == REPO_ROOT else f", agent from {AGENT_ROOT}"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores (load {load}), "
        f"Python {sys.version.split()[0]}{agent}"
    )


# -- database ---------------------------------------------------------------------------


def _libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@contextlib.contextmanager
def temporary_database(server_url: str, migrate: bool = True) -> Iterator[str]:
    """A fresh database on the server of `server_url` (migrated to head); dropped afterwards.

    Yields its libpq URL (`postgresql://...`).
    """
    name = f"aoi_bench_{secrets.token_hex(4)}"
    with psycopg.connect(_libpq(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _libpq(server_url, name)
    try:
        if migrate:
            upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(_libpq(server_url, "postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- processes --------------------------------------------------------------------------


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A temporary folder for DATA_DIR and logs, deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="aoi_bench_"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Child:
    """A child process serving HTTP: its base URL and process id."""

    url: str
    pid: int


@contextlib.contextmanager
def reference_service(log_file: Path) -> Iterator[Child]:
    """The reference model service on a free loopback port (URL ends with `/`)."""
    service = start_reference_service(log_file)
    try:
        yield Child(service.url, service.process.pid)
    finally:
        service.stop()


def pin_process(pid: int, cpus: set[int]) -> None:
    """Restrict every thread of process `pid` to `cpus` (Linux; threads made later inherit).

    Raises:
        BenchmarkError: CPU affinity is not supported here.
    """
    if not hasattr(os, "sched_setaffinity"):
        raise BenchmarkError("CPU pinning needs Linux (os.sched_setaffinity)")
    tasks = Path(f"/proc/{pid}/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` alone (psutil `cpu_times`:
    not its children; the reference service and the agent are separate processes);
    0.0 once the process is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by process `pid` alone (psutil
    `cpu_times`); (0.0, 0.0) once the process is gone. System time is the kernel's work
    for the process: socket and file system calls, fsync, thread wake-ups."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0, 0.0
    return float(times.user), float(times.system)


@contextlib.contextmanager
def agent_process(
    database_url: str,
    model_service_url: str,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Child]:
    """`python run.py` as a child process on a free port (URL without a trailing `/`).

    Waits until `GET /api/health` answers 200. Stopped with SIGINT (Ctrl-C, the way
    the launcher expects), killed if it does not stop in 30 s.

    Raises:
        BenchmarkError: it exited or did not become healthy in time (log tail included).
    """
    port = free_loopback_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SEGFORMER_SERVICE_URL": model_service_url,
        "DATA_DIR": str(data_dir),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    log_file = data_dir / "agent-stdout.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "run.py"],
            cwd=AGENT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url, log_file)
        yield Child(url, process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log_file: Path) -> None:
    deadline = time.monotonic() + AGENT_STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(
                f"the agent exited with code {process.returncode}:\n{_tail(log_file)}"
            )
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(f"{url}/api/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.25)
    raise BenchmarkError(f"the agent did not become healthy on {url}:\n{_tail(log_file)}")


def _tail(log_file: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Stack:
    """A running agent with its own database, data folder and reference model service."""

    agent_url: str
    model_service_url: str
    database_url: str
    workdir: Path
    agent_pid: int
    model_service_pid: int


@contextlib.contextmanager
def agent_stack(
    server_url: str,
    extra_env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[Stack]:
    """Reference model service + agent on a fresh migrated database (or `database_url`).

    Everything it started is stopped and removed when the block ends.
    """
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(workspace())
        db_url = database_url or stack.enter_context(temporary_database(server_url))
        model = stack.enter_context(reference_service(workdir / "reference-service.log"))
        agent = stack.enter_context(agent_process(db_url, model.url, workdir / "data", extra_env))
        try:
            yield Stack(agent.url, model.url, db_url, workdir, agent.pid, model.pid)
        except BaseException:
            for log in [workdir / "reference-service.log", workdir / "data" / "agent-stdout.log"]:
                print(f"--- last lines of {log.name}:\n{_tail(log)}", file=sys.stderr)
            raise


class Deadline:
    """A wall-clock budget for a benchmark loop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        """Raises BenchmarkError once the budget is spent."""
        if time.monotonic() > self.end:
            raise BenchmarkError(f"{what}: time limit of {self.seconds:.0f} s exceeded")
