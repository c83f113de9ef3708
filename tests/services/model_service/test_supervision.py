"""The reference model service supervisor: a service that dies is started again on its
port, waiting longer after each start that fails, and stops for good with `stop()`. Real
processes: the service is killed with SIGKILL, and made to fail at start-up by the real
setting it refuses (the template engine without its folder of golden images)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import psutil
import pytest

from app.services.model_service.supervision import ReferenceSupervisor
from tests.support import wait_until


def answers(url: str) -> bool:
    """The service at `url` answers `/health` with 200."""
    try:
        return httpx2.get(url + "health", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def test_restarts_with_growing_waits_then_comes_back_on_the_same_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.services.model_service.supervision")
    supervisor = ReferenceSupervisor(tmp_path / "service.log", first_backoff_s=0.2)
    url = supervisor.start()
    try:
        first = supervisor.service
        assert first is not None
        # From now on every start fails at once (exit code 1).
        monkeypatch.setenv("REFERENCE_SERVICE_ENGINE", "template")
        monkeypatch.delenv("REFERENCE_SERVICE_TEMPLATES_DIR", raising=False)
        first.process.kill()

        waits = wait_until(
            lambda: (w := re.findall(r"next restart in ([\d.]+) s", caplog.text))[2:] and w,
            timeout_s=180,
        )
        assert [float(w) for w in waits[:3]] == [0.2, 0.4, 0.8], "the wait doubles"
        assert "exited with code -9" in caplog.text
        assert "(restart 2; it exited with code 1)" in caplog.text  # failed starts too

        monkeypatch.delenv("REFERENCE_SERVICE_ENGINE")  # the next start succeeds
        wait_until(lambda: supervisor.service is not first and answers(url), timeout_s=180)
        assert supervisor.url == url, "same port, so the agent's pool needs no change"
        assert supervisor.restarts >= 3
        running = supervisor.service
        assert running is not None
    finally:
        supervisor.stop()
    assert running.process.poll() is not None
    port = str(urlsplit(url).port)
    assert not [p for p in psutil.Process().children(recursive=True) if port in p.cmdline()]
    assert not answers(url)


def test_stop_ends_the_service_and_restarts_no_more(tmp_path: Path) -> None:
    supervisor = ReferenceSupervisor(tmp_path / "service.log")
    url = supervisor.start()
    service = supervisor.service
    assert service is not None
    assert answers(url)
    supervisor.stop()
    supervisor.stop()  # twice is fine
    assert service.process.poll() is not None
    assert supervisor.restarts == 0, "a stop is not a death to restart from"
    assert not answers(url)
