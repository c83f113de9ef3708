"""The object store failing under the agent: a batch waits out an outage and finishes by
itself; a bucket deleted behind the agent's back shows in /health, and uploads get a JSON
503 (never a 500), with nothing half-stored.

The store is moto's S3 server (an emulator of the S3 API, not AWS) in a child process.
An outage is that process frozen (SIGSTOP, then SIGCONT): requests hang until the agent's
S3_TIMEOUT_S, as with a store that stopped answering or a cut network, and the objects
stored before are still there afterwards, as with a real store that comes back. Killing
and restarting moto would refuse connections instead, but would lose every object (moto
keeps them in memory), which no real store does; a refused connection is covered in
tests/services/storage (a closed port).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.services.model_service.reference import ReferenceService, free_loopback_port
from tests.conftest import agent_settings
from tests.support import (
    ModelServiceProxy,
    S3Emulator,
    db_rows,
    local_files,
    make_image,
    serve_agent,
    wait_until,
)

BATCH_SIZE = 12
# Long enough for several back-off rounds (BATCH_RETRY_BACKOFF_BASE_S=0.5), seconds.
OUTAGE_S = 6.0


@pytest.fixture
def freezable_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Emulator]:
    """moto's S3 server of this test alone (the test freezes it), with the standard AWS
    credential variables pointing at it."""
    emulator = S3Emulator(tmp_path / "moto.log").start()
    for name, value in emulator.env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    yield emulator
    assert emulator.process is not None
    if sys.platform != "win32":
        os.kill(emulator.process.pid, signal.SIGCONT)
    emulator.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="freezing a process needs SIGSTOP")
def test_a_batch_waits_for_the_store_and_finishes_when_it_is_back(
    tmp_path: Path,
    database_url: str,
    reference_service: ReferenceService,
    freezable_store: S3Emulator,
) -> None:
    bucket = freezable_store.new_bucket()
    # The reference service behind a proxy that takes 0.2 s an image, so that the batch
    # is still running when the store stops.
    model = ModelServiceProxy(reference_service.url).start()
    model.delay_s = 0.2
    settings = agent_settings(
        tmp_path,
        database_url,
        model.url,
        storage_url=f"s3://{bucket}/line-2",
        s3_endpoint_url=freezable_store.url,
        s3_timeout_s=1,
        batch_retry_backoff_base_s=0.5,
        batch_retry_window_s=120,
    )
    assert freezable_store.process is not None
    pid = freezable_store.process.pid
    try:
        with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
            files = [
                ("images", (f"board-{n}.png", make_image("PNG", (64 + n, 48))))
                for n in range(BATCH_SIZE)
            ]
            batch = c.post("/api/upload/batch", files=files)
            assert batch.status_code == 202, batch.text
            os.kill(pid, signal.SIGSTOP)
            stopped = time.monotonic()
            url = f"/api/batches/{batch.json()['batch_id']}"
            waiting = wait_until(
                lambda: (s := c.get(url).json())["waiting_for_storage"] > 0 and s, timeout_s=30
            )
            assert "waiting for storage, next attempt at " in waiting["message"]
            assert waiting["failed"] == 0
            item = next(i for i in waiting["items"] if i["waiting_for"] == "storage")
            assert item["status"] == "pending"
            assert "object store" in item["error"]
            health = c.get("/api/health").json()
            assert health["status"] == "degraded"
            assert health["storage"]["state"] == "unavailable"
            assert "batch images wait" in health["detail"]

            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            os.kill(pid, signal.SIGCONT)
            final = wait_until(lambda: (s := c.get(url).json())["done"] and s, timeout_s=120)
    finally:
        model.stop()
    # Every image succeeded with no retry asked for, each with its files in the store.
    assert final["succeeded"] == BATCH_SIZE, final
    assert final["failed"] == 0
    assert final["waiting_for_storage"] == 0
    assert final["message"] is None
    rows = db_rows(
        database_url,
        "SELECT max(attempts), count(*) FILTER (WHERE next_attempt_at IS NOT NULL"
        " OR waiting_since IS NOT NULL) FROM inspections WHERE batch_id = %s",
        final["batch_id"],
    )
    assert rows[0][0] >= 2  # some image really was tried again
    assert rows[0][1] == 0
    keys = freezable_store.keys(bucket, "line-2/results/")
    for item in final["items"]:
        assert sum(item["img_unique_id"] in k for k in keys) == 4, item


def test_a_bucket_deleted_later_shows_in_health_and_uploads_get_a_json_503(
    tmp_path: Path,
    database_url: str,
    reference_service: ReferenceService,
    s3_emulator: S3Emulator,
) -> None:
    bucket = s3_emulator.new_bucket()
    settings = agent_settings(
        tmp_path,
        database_url,
        reference_service.url,
        storage_url=f"s3://{bucket}/line-4",
        s3_endpoint_url=s3_emulator.url,
    )
    ledgered = db_rows(database_url, "SELECT count(*) FROM inspections")
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/api/health").json()["storage"]["state"] == "ok"
        s3_emulator.delete_bucket(bucket)
        # /health reuses its last look at the store for a few seconds.
        health = wait_until(
            lambda: (h := c.get("/api/health").json())["storage"]["state"] != "ok" and h,
            timeout_s=15,
        )
        assert health["status"] == "degraded"
        assert health["storage"]["state"] == "misconfigured"
        assert f"the bucket '{bucket}'" in health["storage"]["detail"]
        assert "refuses the agent" in health["detail"]

        single = c.post("/api/upload", files={"image": ("board.png", make_image())})
        batch = c.post(
            "/api/upload/batch",
            files=[("images", (f"b{n}.png", make_image("PNG", (40 + n, 30)))) for n in range(3)],
        )
        for answer in (single, batch):
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["error"] == "storage_misconfigured"
            assert f"the bucket '{bucket}' of s3://{bucket}/line-4 does not exist" in body["detail"]
            assert int(answer.headers["retry-after"]) > 0
    # Nothing half-stored: no ledger row, no scratch file left.
    assert db_rows(database_url, "SELECT count(*) FROM inspections") == ledgered
    assert local_files(tmp_path / "scratch") == []


def test_a_single_upload_while_the_store_is_down_is_a_503_to_send_again(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> None:
    """Nothing listens on the store's port (connections refused): the store is down."""
    settings = agent_settings(
        tmp_path,
        database_url,
        reference_service.url,
        storage_url="s3://aoi-images/line-5",
        s3_endpoint_url=f"http://127.0.0.1:{free_loopback_port()}",
        s3_timeout_s=2,
    )
    ledgered = db_rows(database_url, "SELECT count(*) FROM inspections")
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
        answer = c.post("/api/upload", files={"image": ("board.png", make_image())})
        health = c.get("/api/health").json()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "storage_unavailable"
    assert answer.headers["retry-after"] == "15"
    assert health["storage"]["state"] == "unavailable"
    assert db_rows(database_url, "SELECT count(*) FROM inspections") == ledgered
    assert local_files(tmp_path / "scratch") == []
