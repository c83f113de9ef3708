"""A batch survives the agent being killed mid-way: every image ends done exactly once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2

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
