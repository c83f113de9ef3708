"""`python run.py` stopped by SIGTERM (what `kill`, `timeout`, systemd and `docker stop`
send) or SIGINT (Ctrl-C) leaves no process behind and exits 0 in bounded time; a reference
model service that dies is started again and the agent works as before. Real processes:
run.py with its embedded PostgreSQL and reference model service (POSIX signals, so not on
Windows, where Ctrl-C reaches a console's processes, not a pid)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import psutil
import pytest

from app.services.model_service.reference import free_loopback_port
from tests.support import REPO_ROOT, make_image, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Seconds run.py may take to stop on a loaded 2-core machine; the parts' own bounds add up
# to about 35 s (docs/deployment.md), a quiet shutdown takes a few.
STOP_BOUND_S = 40.0
START_TIMEOUT_S = 180.0


class RunPy:
    """`python run.py` with the defaults: embedded PostgreSQL and reference model service
    under a temporary DATA_DIR, on a free port."""

    def __init__(self, data_dir: Path, command: tuple[str, ...] = ("run.py",), **env: str) -> None:
        unset = ("DATABASE_URL", "SEGFORMER_SERVICE_URL", "SEGFORMER_SERVICE_URLS", "HOST")
        self.env = {k: v for k, v in os.environ.items() if k not in unset}
        self.env.update(DATA_DIR=str(data_dir), PORT=str(free_loopback_port()), **env)
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.env['PORT']}"
        self.output = data_dir / "run.py.out"
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *(str(REPO_ROOT / "run.py") if c == "run.py" else c for c in command),
                ],
                cwd=data_dir,  # no .env here
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def health(self) -> str | None:
        """`/health`'s status (`ok`, `degraded`, `down`), None while it does not answer.

        Raises:
            AssertionError: run.py exited.
        """
        assert self.process.poll() is None, self.output.read_text()[-3000:]
        try:
            return str(httpx2.get(self.url + "/health", timeout=5).json()["status"])
        except (httpx2.HTTPError, ValueError, KeyError):
            return None

    def wait_healthy(self) -> None:
        """Wait until `/health` says ok."""
        wait_until(lambda: self.health() == "ok", timeout_s=START_TIMEOUT_S, interval_s=0.5)

    def started_processes(self) -> list[psutil.Process]:
        """Every process run.py started and that runs now: its descendants, and the
        embedded PostgreSQL server (which pg_ctl detaches from run.py) with its children."""
        processes = psutil.Process(self.process.pid).children(recursive=True)
        postmaster_pid = int(
            (self.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0]
        )
        postmaster = psutil.Process(postmaster_pid)
        return [*processes, postmaster, *postmaster.children(recursive=True)]

    def reference_service(self) -> psutil.Process:
        """The reference model service process run.py started."""
        (service,) = [
            p
            for p in psutil.Process(self.process.pid).children()
            if "segformer_service" in p.cmdline()
        ]
        return service

    def stop_leaving_nothing(self, signum: int) -> float:
        """Send `signum`; check that run.py exits with 0 within STOP_BOUND_S and that no
        process it started still runs; returns how long it took to exit, seconds."""
        processes = self.started_processes()
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run.py did not exit within {STOP_BOUND_S} s of {signum!r}")
        took_s = time.monotonic() - started
        assert code == 0, self.output.read_text()[-3000:]
        _, alive = psutil.wait_procs(processes, timeout=5)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        assert not (self.data_dir / "postgres" / "postmaster.pid").exists(), "stale lock file"
        return took_s

    def kill(self) -> None:
        """Clean-up after a failed test: kill run.py and everything it started."""
        if self.process.poll() is None:
            for process in psutil.Process(self.process.pid).children(recursive=True):
                process.kill()
            self.process.kill()
            self.process.wait()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """DATA_DIR outside pytest's tmp_path: run as root, the embedded server runs as another
    user, who cannot enter that."""
    folder = Path(tempfile.mkdtemp(prefix="aoi-lifecycle-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def restarts_counted(agent: RunPy) -> float:
    """`aoi_reference_service_restarts_total` from the agent's `/metrics`."""
    text = httpx2.get(agent.url + "/metrics", timeout=10).text
    match = re.search(r"^aoi_reference_service_restarts_total (\S+)$", text, re.MULTILINE)
    assert match, "the restart counter is missing from /metrics"
    return float(match.group(1))


def test_a_killed_reference_service_comes_back_and_sigterm_leaves_nothing(
    data_dir: Path,
) -> None:
    agent = RunPy(data_dir)
    try:
        agent.wait_healthy()
        assert restarts_counted(agent) == 0
        first = agent.reference_service()
        first.kill()  # SIGKILL: as the out-of-memory killer would

        def back() -> bool:
            return agent.health() == "ok" and restarts_counted(agent) == 1

        wait_until(back, timeout_s=START_TIMEOUT_S, interval_s=0.5)
        second = agent.reference_service()
        assert second.pid != first.pid
        upload = httpx2.post(
            agent.url + "/upload", files={"image": ("board.png", make_image())}, timeout=120
        )
        assert upload.status_code in (200, 201), upload.text
        overlay = httpx2.get(upload.json()["images"]["overlay"], timeout=30)
        assert overlay.content.startswith(b"\x89PNG")
        log = agent.output.read_text()
        assert "reference model service exited with code -9" in log
        assert "restarting the reference model service (restart 1" in log

        took_s = agent.stop_leaving_nothing(signal.SIGTERM)
    finally:
        agent.kill()
    print(f"run.py stopped on SIGTERM in {took_s:.2f} s")


def test_ctrl_c_with_several_api_processes_leaves_nothing(data_dir: Path) -> None:
    agent = RunPy(data_dir, WEB_CONCURRENCY="2")
    try:
        agent.wait_healthy()
        workers = [
            p for p in agent.started_processes() if "multiprocessing" in " ".join(p.cmdline())
        ]
        assert len(workers) >= 2, "two API worker processes (and the resource tracker)"
        took_s = agent.stop_leaving_nothing(signal.SIGINT)
    finally:
        agent.kill()
    print(f"run.py with 2 API processes stopped on SIGINT in {took_s:.2f} s")


def test_sigterm_of_a_worker_leaves_nothing(data_dir: Path) -> None:
    """`aoi-agent worker` with the defaults starts its own embedded PostgreSQL and reference
    model service, as run.py does, and must stop them the same way on SIGTERM (systemd's
    default KillSignal)."""
    worker = RunPy(data_dir, command=("-m", "app.cli", "worker"))
    try:
        wait_until(
            lambda: "SIGTERM stops it" in worker.output.read_text(),
            timeout_s=START_TIMEOUT_S,
            interval_s=0.5,
        )
        worker.reference_service()
        took_s = worker.stop_leaving_nothing(signal.SIGTERM)
    finally:
        worker.kill()
    print(f"aoi-agent worker stopped on SIGTERM in {took_s:.2f} s")
