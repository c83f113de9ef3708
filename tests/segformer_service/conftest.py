"""Fixtures for the reference model service tests.

The HTTP tests run the service for real: ``python -m segformer_service --port 0``
in a subprocess on a loopback port, talked to with httpx2.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import SAMPLES_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "reference model service listening on "
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def deeppcb() -> Path:
    """The six DeepPCB pairs shipped in samples/deeppcb (images, templates, annotations)."""
    return SAMPLES_DIR


def _start_service(log_path: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start the service on a free loopback port; return the process and its base URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra_env}
    log = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "segformer_service", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    log.close()
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=START_TIMEOUT_S)
            if line.startswith(READY_PREFIX):
                return proc, line[len(READY_PREFIX) :].strip()
    except queue.Empty:
        proc.kill()
        proc.wait()
        log_text = log_path.read_text(encoding="utf-8")
        pytest.fail(
            f"reference model service did not start within {START_TIMEOUT_S} s:\n{log_text}"
        )


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="session")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a reference model service with default settings."""
    log = tmp_path_factory.mktemp("service") / "service.log"
    proc, url = _start_service(log, {})
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def small_limit_service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a service whose upload limit is 0.01 MiB (10,485 bytes)."""
    log = tmp_path_factory.mktemp("service_small") / "service.log"
    proc, url = _start_service(log, {"REFERENCE_SERVICE_MAX_UPLOAD_SIZE_MB": "0.01"})
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start services with extra ``REFERENCE_SERVICE_*`` variables; returns their base URLs.

    Call it as ``start_service({"REFERENCE_SERVICE_ENGINE": "template", ...})``;
    every service it started is stopped when the module's tests are done.
    """
    started: list[subprocess.Popen[str]] = []

    def start(extra_env: dict[str, str]) -> str:
        log = tmp_path_factory.mktemp("service_env") / "service.log"
        proc, url = _start_service(log, extra_env)
        started.append(proc)
        return url

    yield start
    for proc in started:
        _stop(proc)
