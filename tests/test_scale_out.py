"""Many agents, many workers: API and queue-worker processes on loopback sharing one
PostgreSQL database and one object store, with no state of their own.

The object store is moto's S3 server, an *emulator* of the S3 API (not AWS), started as
a child process on a loopback port; the model service is the reference service.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image as PILImage

from app.services.model_service.reference import ReferenceService, free_loopback_port
from tests.support import REPO_ROOT, S3Emulator, db_rows, local_files, wait_until

BATCH = 200

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL of a worker: POSIX only"),
]


class Process:
    """`python -m app.cli ARGS` as a child process, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "app.cli", *args],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        """Whether it still runs; raises with its log when it exited."""
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.log.name} exited: {self.log.read_text()[-3000:]}")
        return True

    def stop(self) -> None:
        """Terminate (SIGTERM) and wait."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _images(count: int) -> list[bytes]:
    """`count` different small PNGs (a grey level and a size each)."""
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        PILImage.new("L", (48 + i % 16, 40), color=i % 250).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


@pytest.fixture
def cluster(
    tmp_path: Path,
    database_url: str,
    reference_service: ReferenceService,
    s3_emulator: S3Emulator,
) -> Iterator[dict[str, Any]]:
    """Two API processes (the second with WEB_CONCURRENCY=2) and two queue workers, one
    database, one bucket; every process with the same (empty) DATA_DIR."""
    bucket = s3_emulator.new_bucket()
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        **s3_emulator.env,
        "DATABASE_URL": database_url,
        "SEGFORMER_SERVICE_URL": reference_service.url,
        "STORAGE_URL": f"s3://{bucket}/plant",
        "DATA_DIR": str(data_dir),
        "LOG_DIR": str(tmp_path / "logs"),
        "SECRET_KEY": "a-secret-all-agents-share-0123456789",
        "HOST": "127.0.0.1",
        "MAX_BATCH_SIZE": str(BATCH),
        "STALLED_JOB_AFTER_S": "3",
        "WORKER_CONCURRENCY": "4",
        "SEGFORMER_BACKOFF_BASE_S": "0.05",
        "LOG_LEVEL": "WARNING",
    }
    apis = []
    started: list[Process] = []
    try:
        for name, concurrency in (("api-a", "1"), ("api-b", "2")):
            port = free_loopback_port()
            api_env = {
                **env,
                "PORT": str(port),
                "WEB_CONCURRENCY": concurrency,
                "RUN_WORKER_IN_PROCESS": "false",
            }
            process = Process(["serve"], api_env, tmp_path / f"{name}.log")
            started.append(process)
            apis.append((process, f"http://127.0.0.1:{port}"))
        workers = [Process(["worker"], env, tmp_path / f"worker-{i}.log") for i in range(2)]
        started += workers

        def ready() -> bool:
            for process, url in apis:
                process.alive()
                try:
                    if httpx2.get(url + "/api/health", timeout=2).status_code != 200:
                        return False
                except httpx2.HTTPError:
                    return False
            pids = {row[0] for row in db_rows(database_url, "SELECT pid FROM agent_processes")}
            return all(w.alive() and w.popen.pid in pids for w in workers)

        wait_until(ready, timeout_s=90, interval_s=0.5)
        yield {
            "apis": [url for _, url in apis],
            "workers": workers,
            "bucket": bucket,
            "data_dir": data_dir,
            "logs": tmp_path,
        }
    finally:
        for process in started:
            process.stop()


def test_a_batch_survives_a_killed_worker_with_every_file_in_the_object_store(
    cluster: dict[str, Any], database_url: str, s3_emulator: S3Emulator
) -> None:
    upload_url, progress_url = cluster["apis"]
    images = _images(BATCH)
    with httpx2.Client(base_url=upload_url, timeout=120) as client:
        accepted = client.post(
            "/api/upload/batch",
            files=[("images", (f"board_{i:03d}.png", data)) for i, data in enumerate(images)],
        )
    assert accepted.status_code == 202, accepted.text
    batch_id = accepted.json()["batch_id"]
    assert len(accepted.json()["accepted"]) == BATCH

    victim, survivor = cluster["workers"]
    with httpx2.Client(base_url=progress_url, timeout=30) as progress:

        def status() -> dict[str, Any]:
            answer = progress.get(f"/api/batches/{batch_id}")
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        wait_until(lambda: status()["succeeded"] >= 20, timeout_s=60, interval_s=0.1)
        assert victim.alive()
        victim.popen.kill()  # SIGKILL: no clean-up runs in it
        victim.popen.wait()
        killed_at = status()["succeeded"]
        final = wait_until(lambda: (s := status())["done"] and s, timeout_s=120, interval_s=0.5)

    assert killed_at < BATCH  # the kill came mid-batch
    assert survivor.alive()
    assert (final["succeeded"], final["failed"], final["pending"]) == (BATCH, 0, 0)

    # Every image stored exactly once: one images row each, inputs and results in the store.
    rows = db_rows(
        database_url,
        "SELECT i.img_unique_id, i.input_image_path, i.result_image_1_path,"
        " n.status FROM images i JOIN inspections n USING (img_unique_id)"
        " WHERE n.batch_id = %s",
        batch_id,
    )
    assert len(rows) == BATCH
    assert len({row[0] for row in rows}) == BATCH
    assert {row[3] for row in rows} == {"succeeded"}
    keys = s3_emulator.keys(cluster["bucket"], "plant/")
    inputs = [k for k in keys if k.startswith("plant/uploads/")]
    results = [k for k in keys if k.startswith("plant/results/")]
    assert sorted(inputs) == sorted(f"plant/{row[1]}" for row in rows)
    assert len(results) == 4 * BATCH
    assert {f"plant/{row[2]}" for row in rows} <= set(results)
    stored = {s3_emulator.read(cluster["bucket"], f"plant/{row[1]}") for row in rows[:5]}
    assert stored <= set(images)

    # api-b served with two uvicorn worker processes.
    assert "2 API worker processes" in (cluster["logs"] / "api-b.log").read_text()
    # Nothing on local disk: DATA_DIR holds only the (empty) scratch folder and api-b's
    # Prometheus multi-process files (per-host metrics state, not images or results).
    data_dir = cluster["data_dir"]
    on_disk = [p for p in local_files(data_dir) if p.relative_to(data_dir).parts[0] != "prometheus"]
    assert on_disk == []
