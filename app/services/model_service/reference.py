"""Starting the bundled reference model service as a child process on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from dotenv import dotenv_values

REFERENCE_ENV_PREFIX = "REFERENCE_SERVICE_"


class ReferenceServiceError(RuntimeError):
    """The reference model service would not start; `exit_code` is its exit status when
    it exited (None when it did not answer or the start was cancelled)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class ReferenceService:
    """A running reference model service and its base URL."""

    process: subprocess.Popen[bytes]
    url: str

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the child process (kill it if it does not stop in `timeout_s`)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reference_service_env(env_file: Path = Path(".env")) -> dict[str, str]:
    """The child's environment: ours plus the `REFERENCE_SERVICE_*` lines of `env_file`.

    Variables already in the environment win over the file (as for the agent's own
    settings), so `REFERENCE_SERVICE_ENGINE=template` set either way reaches the service.
    """
    from_file = {
        key: value
        for key, value in (dotenv_values(env_file) if env_file.is_file() else {}).items()
        if key.startswith(REFERENCE_ENV_PREFIX) and value is not None
    }
    return {**from_file, **os.environ}


def start_reference_service(
    log_file: Path,
    port: int | None = None,
    startup_timeout_s: float = 60.0,
    max_image_pixels: int | None = None,
    cancel: threading.Event | None = None,
    extra_env: dict[str, str] | None = None,
) -> ReferenceService:
    """Start `python -m segformer_service` on 127.0.0.1 and wait until `/health` answers.

    The child runs in a process group of its own, so that a Ctrl-C in the terminal
    reaches only the agent, which then stops the child in its turn (after the API).

    Args:
        log_file: where the child's output goes.
        port: the port, or None for a free one.
        startup_timeout_s: how long to wait for it to answer, seconds.
        max_image_pixels: the service's pixel limit (the agent's MAX_IMAGE_PIXELS, so both
            refuse the same images); None keeps the service's own setting.
        cancel: when set while waiting, the child is stopped and the start abandoned.
        extra_env: variables set for the child only, over the others (e.g.
            `REFERENCE_SERVICE_ENGINE` for a second service of another engine).

    Raises:
        ReferenceServiceError: it exited, did not answer in time, or `cancel` was set.
    """
    port = port or free_loopback_port()
    url = f"http://127.0.0.1:{port}/"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = reference_service_env()
    if max_image_pixels is not None:
        env["REFERENCE_SERVICE_MAX_IMAGE_PIXELS"] = str(max_image_pixels)
    env.update(extra_env or {})
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "segformer_service", "--host", "127.0.0.1"),
                *("--port", str(port), "--exit-with-parent", str(os.getpid())),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            **own_process_group(),
        )
    service = ReferenceService(process, url)
    try:
        _wait_until_healthy(service, log_file, startup_timeout_s, cancel or threading.Event())
    except BaseException:  # also Ctrl-C / SIGTERM while waiting: no orphan is left
        service.stop()
        raise
    return service


def own_process_group() -> dict[str, Any]:
    """`subprocess.Popen` arguments that start the child in a process group of its own
    (a new session on POSIX, CREATE_NEW_PROCESS_GROUP on Windows), out of reach of the
    terminal's Ctrl-C."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _wait_until_healthy(
    service: ReferenceService, log_file: Path, timeout_s: float, cancel: threading.Event
) -> None:
    """Return once `service` answers `/health` with 200.

    Raises:
        ReferenceServiceError: it exited, did not answer within `timeout_s`, or `cancel`
            was set.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ReferenceServiceError(
                f"the reference model service exited with code {service.process.returncode};"
                f" see {log_file}",
                exit_code=service.process.returncode,
            )
        try:
            if httpx2.get(service.url + "health", timeout=1.0).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        if cancel.wait(0.2):
            raise ReferenceServiceError("the reference model service start was cancelled")
    raise ReferenceServiceError(
        f"the reference model service did not answer on {service.url} within"
        f" {timeout_s:.0f} s; see {log_file}"
    )
