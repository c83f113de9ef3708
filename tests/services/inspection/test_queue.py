"""A batch survives the agent being killed mid-way: every image ends done exactly once."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests.support import REPO_ROOT, AgentProcess, db_rows, wait_until


def test_killed_agent_finishes_the_batch_after_restart_exactly_once(
    agent_process: AgentProcess, database_url: str, deeppcb: list[Path]
) -> None:
    images = deeppcb[50:90]
    agent_process.start()
    with httpx2.Client(base_url=agent_process.url, timeout=60) as client:
        batch = client.post(
            "/api/upload/batch", files=[("images", (p.name, p.read_bytes())) for p in images]
        ).json()
        batch_id = batch["batch_id"]
        wait_until(
            lambda: client.get(f"/api/batches/{batch_id}").json()["succeeded"] >= 2,
            interval_s=0.05,
        )
    agent_process.kill()
    before = db_rows(
        database_url,
        "SELECT count(*) FROM inspections WHERE batch_id = %s AND status = 'succeeded'",
        batch_id,
    )[0][0]
    assert before < len(images), "the batch finished before the kill; the test proves nothing"

    agent_process.start()
    with httpx2.Client(base_url=agent_process.url, timeout=60) as client:
        status = wait_until(
            lambda: (s := client.get(f"/api/batches/{batch_id}").json())["done"] and s,
            timeout_s=120,
        )
    assert status["succeeded"] == len(images)
    assert status["failed"] == 0
    assert db_rows(
        database_url,
        "SELECT count(*), count(DISTINCT i.img_unique_id) FROM images i"
        " JOIN inspections l USING (img_unique_id) WHERE l.batch_id = %s",
        batch_id,
    ) == [(len(images), len(images))]
    per_class = db_rows(
        database_url,
        "SELECT count(*) FROM classes c JOIN inspections l USING (img_unique_id)"
        " WHERE l.batch_id = %s GROUP BY c.img_unique_id, c.class_name HAVING count(*) > 1",
        batch_id,
    )
    assert per_class == []


def test_separate_worker_process_does_the_batch_work(
    agent_process: AgentProcess, database_url: str, deeppcb: list[Path], tmp_path: Path
) -> None:
    agent_process.env["RUN_WORKER_IN_PROCESS"] = "false"
    agent_process.start()
    with httpx2.Client(base_url=agent_process.url, timeout=60) as client:
        batch = client.post(
            "/api/upload/batch", files=[("images", (p.name, p.read_bytes())) for p in deeppcb[:3]]
        ).json()
        assert client.get(f"/api/batches/{batch['batch_id']}").json()["pending"] == 3
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-c", "from app.cli import main; main()", "worker"],
                cwd=REPO_ROOT,
                env=agent_process.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            status = wait_until(
                lambda: (s := client.get(f"/api/batches/{batch['batch_id']}").json())["done"] and s,
                timeout_s=60,
            )
        finally:
            worker.terminate()
            worker.wait(30)
    assert status["succeeded"] == 3


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sweep itself is replaced (a fake: what is under test is the loop's logging over
    a store outage, a database outage and the recovery, which a real store cannot be made
    to show tick by tick on demand)."""
    from sqlalchemy.exc import OperationalError

    from app.errors import StorageUnavailable
    from app.services.inspection.queue import StalledJobReaper

    outcomes: list[BaseException | None] = [
        StorageUnavailable("the store did not answer"),
        StorageUnavailable("the store did not answer"),
        StorageUnavailable("the store did not answer"),
        None,
        OperationalError("SELECT 1", {}, Exception("connection refused")),
        OperationalError("SELECT 1", {}, Exception("connection refused")),
        None,
    ]
    done = asyncio.Event()

    class Reaper(StalledJobReaper):
        async def sweep(self) -> int:
            if not outcomes:
                done.set()
                return 0
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome
            return 0

    reaper = Reaper(None, None, stalled_after_s=60, interval_s=0.001)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="app.services.inspection.queue"):
        reaper.start()
        await asyncio.wait_for(done.wait(), timeout=10)
        await reaper.stop()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "stalled-job sweep waits for the store"),
        ("INFO", "stalled-job sweep: the store answers again"),
        ("WARNING", "stalled-job sweep waits for the database"),
        ("INFO", "stalled-job sweep: the database answers again"),
    ]
    assert not any(r.exc_info for r in caplog.records)
