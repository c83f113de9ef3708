"""A batch survives the agent being killed mid-way: every image ends done exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.services.model_service.reference import ReferenceService, free_loopback_port
from tests.support import REPO_ROOT, db_rows, wait_until


class AgentProcess:
    """`python run.py` as a child process, as an administrator would start it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "run.py"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx2.get(self.url + "/api/health", timeout=1).status_code == 200
            except httpx2.HTTPError:
                return False

        wait_until(ready, timeout_s=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: no clean-up runs
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture
def agent_process(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentProcess]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SEGFORMER_SERVICE_URL": reference_service.url,
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_loopback_port()),
        "STALLED_JOB_AFTER_S": "3",
        "SEGFORMER_MAX_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
    }
    process = AgentProcess(env, tmp_path / "agent.log")
    yield process
    process.stop()


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
