"""`python -m segformer_service --exit-with-parent PID`: the service stops by itself when the
process that started it ends, even by `kill -9` (which gives that process no chance to stop
its children), so `run.py` killed hard leaves no reference service behind."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx2

from app.services.model_service.reference import free_loopback_port


def test_service_stops_when_its_parent_ends() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    port = free_loopback_port()
    service = subprocess.Popen(
        [
            *(sys.executable, "-m", "segformer_service", "--host", "127.0.0.1"),
            *("--port", str(port), "--exit-with-parent", str(parent.pid)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert service.poll() is None, service.stdout.read() if service.stdout else ""
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not come up within 60 s"
            time.sleep(0.2)
        parent.kill()
        parent.wait()
        assert service.wait(timeout=30) == 0
        assert service.stdout is not None
        assert f"parent process {parent.pid} has ended" in service.stdout.read()
    finally:
        for process in (parent, service):
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()


def test_a_parent_that_is_not_running_is_refused() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    result = subprocess.run(
        [sys.executable, "-m", "segformer_service", "--exit-with-parent", str(gone.pid)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"no process {gone.pid} is running" in result.stderr
