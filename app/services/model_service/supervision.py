"""Keeping the reference model service that `run.py` started running.

When the service exits on its own (a crash, an out-of-memory kill, someone's `kill -9`),
it is started again on the same port, so the agent's model-service pool, which keeps
probing a service it left out, takes it back with nothing else to change. Restarts wait
with exponential back-off (tenacity): a service that dies at once every time is started
at most every `max_backoff_s`, not in a tight loop. Each exit and restart is logged at
WARNING and counted in `aoi_reference_service_restarts_total` (docs/metrics.md).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from app.services.model_service.reference import (
    ReferenceService,
    ReferenceServiceError,
    start_reference_service,
)

if TYPE_CHECKING:
    from prometheus_client import Counter

logger = logging.getLogger(__name__)


class ServiceExited(RuntimeError):
    """The reference model service exited soon after it started."""

    def __init__(self, exit_code: int, uptime_s: float) -> None:
        super().__init__(
            f"the reference model service exited with code {exit_code} after {uptime_s:.1f} s"
        )
        self.exit_code = exit_code


class ReferenceSupervisor:
    """Starts the reference model service and restarts it on the same port when it exits.

    Args:
        log_file: where the service's output goes (each start appends).
        max_image_pixels: the service's pixel limit (see `start_reference_service`).
        first_backoff_s: wait before the first restart after a quick exit, seconds;
            doubled after each further quick exit, up to `max_backoff_s`.
        stable_after_s: a service that ran this long, seconds, is restarted at once and
            the back-off starts again from `first_backoff_s`.
    """

    def __init__(
        self,
        log_file: Path,
        max_image_pixels: int | None = None,
        *,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_after_s: float = 60.0,
    ) -> None:
        self.log_file = log_file
        self.max_image_pixels = max_image_pixels
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.restarts = 0
        self._stopping = threading.Event()
        self._service: ReferenceService | None = None
        self._thread: threading.Thread | None = None
        self._counter: Counter | None = None
        self._last_exit_code: int | None = None
        self._started_at = time.monotonic()

    @property
    def url(self) -> str:
        """The service's base URL (`http://127.0.0.1:<port>/`), the same across restarts."""
        assert self._service is not None, "start() first"
        return self._service.url

    @property
    def service(self) -> ReferenceService | None:
        """The current service process, or None before `start()`."""
        return self._service

    def start(self, startup_timeout_s: float = 60.0) -> str:
        """Start the service, wait until it answers, and watch it from a background thread.

        Returns:
            Its base URL.

        Raises:
            ReferenceServiceError: it exited or did not answer within `startup_timeout_s`.
        """
        # Imported here, not at the top: `run.py` imports this module before it sets
        # PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads once, at its import.
        from app.services.system.metrics import REFERENCE_SERVICE_RESTARTS

        self._counter = REFERENCE_SERVICE_RESTARTS
        self._service = start_reference_service(
            self.log_file,
            startup_timeout_s=startup_timeout_s,
            max_image_pixels=self.max_image_pixels,
            cancel=self._stopping,
        )
        self._started_at = time.monotonic()
        self._thread = threading.Thread(
            target=self._watch, name="reference-service-supervisor", daemon=True
        )
        self._thread.start()
        return self._service.url

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop watching, then stop the service (killed if it does not stop within
        `timeout_s`); a restart under way is abandoned. Safe to call twice."""
        started = time.monotonic()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._service is not None:
            self._service.stop(timeout_s)
            logger.info(
                "reference model service stopped",
                extra={"duration_s": round(time.monotonic() - started, 2)},
            )

    def _watch(self) -> None:
        """Until `stop()`: wait for the service to exit, then restart it with back-off."""
        while not self._stopping.is_set():
            # A fresh Retrying after each stable run: the back-off starts again.
            for attempt in Retrying(
                retry=retry_if_exception_type(Exception),
                wait=wait_exponential(
                    multiplier=self.first_backoff_s,
                    min=self.first_backoff_s,
                    max=self.max_backoff_s,
                ),
                sleep=self._sleep,
                before_sleep=self._log_backoff,
            ):
                with attempt:
                    self._run_once()

    def _run_once(self) -> None:
        """Start the service if it is not running, then wait until it exits or `stop()`.

        Raises:
            ServiceExited: it exited within `stable_after_s` of its start.
            ReferenceServiceError: it would not start again.
        """
        if self._stopping.is_set():
            return
        if self._service is None or self._service.process.poll() is not None:
            self._restart()
        assert self._service is not None
        while not self._stopping.is_set():
            try:
                code = self._service.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            uptime_s = time.monotonic() - self._started_at
            self._last_exit_code = code
            logger.warning(
                "reference model service exited with code %s after %.1f s",
                code,
                uptime_s,
                extra={"exit_code": code, "uptime_s": round(uptime_s, 1), "url": self.url},
            )
            if uptime_s < self.stable_after_s:
                raise ServiceExited(code, uptime_s)
            return

    def _restart(self) -> None:
        """Start the service again on its port; counted and logged before it is tried.

        Raises:
            ReferenceServiceError: it would not start (e.g. another program took the port).
        """
        port = urlsplit(self.url).port
        self.restarts += 1
        if self._counter is not None:
            self._counter.inc()
        logger.warning(
            "restarting the reference model service (restart %d; it exited with code %s)",
            self.restarts,
            self._last_exit_code,
            extra={"restart": self.restarts, "exit_code": self._last_exit_code, "url": self.url},
        )
        try:
            self._service = start_reference_service(
                self.log_file,
                port=port,
                max_image_pixels=self.max_image_pixels,
                cancel=self._stopping,
            )
        except ReferenceServiceError as exc:
            self._last_exit_code = exc.exit_code
            raise
        self._started_at = time.monotonic()
        logger.info("reference model service is back", extra={"url": self.url})

    def _sleep(self, seconds: float) -> None:
        """tenacity's sleep, cut short by `stop()`."""
        self._stopping.wait(seconds)

    def _log_backoff(self, retry_state: RetryCallState) -> None:
        """Say how long the next restart waits (tenacity's before_sleep hook)."""
        if self._stopping.is_set():
            return
        error = retry_state.outcome.exception() if retry_state.outcome else None
        wait_s = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "%s; next restart in %.1f s",
            error,
            wait_s,
            extra={"wait_s": wait_s},
            exc_info=None if isinstance(error, ServiceExited | ReferenceServiceError) else error,
        )
