"""The embedded PostgreSQL is stopped with the agent, even after a crash and restart."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from app.services.database.embedded import forget_dead_users
from app.services.model_service.reference import ReferenceService, free_loopback_port
from tests.support import AgentProcess, wait_until


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def test_forget_dead_users_keeps_live_processes(tmp_path: Path) -> None:
    dead = psutil.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".handle_pids.json").write_text(f"[{dead.pid}, {os.getpid()}]")
    assert forget_dead_users(tmp_path) == [dead.pid]
    assert (tmp_path / ".handle_pids.json").read_text() == f"[{os.getpid()}]"
    assert forget_dead_users(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT (Ctrl-C) to the agent")
def test_ctrl_c_after_a_crash_and_restart_stops_the_embedded_postgres(
    tmp_path: Path, reference_service: ReferenceService
) -> None:
    """`run.py` with no DATABASE_URL (embedded server) is killed, started again, and then
    stopped with Ctrl-C: the server the first run started must be stopped too."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "SEGFORMER_SERVICE_URL": reference_service.url,
            "DATA_DIR": str(tmp_path / "data"),
            "PORT": str(free_loopback_port()),
            "LOG_LEVEL": "WARNING",
        }
    )
    pgdata = tmp_path / "data" / "postgres"
    agent = AgentProcess(env, tmp_path / "agent.log")
    agent.start()
    postmaster = _postmaster_pid(pgdata)
    try:
        agent.kill()
        assert psutil.pid_exists(postmaster), "the crash stopped the server; nothing to test"

        agent.start()
        assert _postmaster_pid(pgdata) == postmaster  # the running server was adopted
        assert agent.process is not None
        agent.process.send_signal(signal.SIGINT)
        assert agent.process.wait(60) == 0
        wait_until(lambda: not psutil.pid_exists(postmaster), timeout_s=30)
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        if psutil.pid_exists(postmaster):
            psutil.Process(postmaster).terminate()
