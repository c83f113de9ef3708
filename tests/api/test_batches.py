"""Batches through a model-service outage: automatic retries with back-off, the batch
status saying what it waits for, failed images listed, and `POST .../retry` for a batch.

The outage is real (nothing listens on the model service's port, connections are
refused); the model service that comes back is the reference one behind a proxy on that
port (`ModelServiceProxy`), because the reference service cannot be made to fail on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import ModelServiceProxy, db_rows, serve_agent, wait_until


@pytest.fixture
def outage(reference_service: ReferenceService) -> Iterator[ModelServiceProxy]:
    """A model-service URL where nothing answers until the test calls `start()`."""
    proxy = ModelServiceProxy(reference_service.url)
    yield proxy
    proxy.stop()


def test_batch_waits_for_the_model_service_and_finishes_when_it_is_back(
    tmp_path: Path, database_url: str, outage: ModelServiceProxy, deeppcb: list[Path]
) -> None:
    settings = agent_settings(
        tmp_path, database_url, outage.url, segformer_max_retries=2, batch_retry_backoff_base_s=1
    )
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
        batch = c.post(
            "/api/upload/batch",
            files=[("images", (p.name, p.read_bytes())) for p in deeppcb[60:63]],
        ).json()
        url = f"/api/batches/{batch['batch_id']}"
        waiting = wait_until(
            lambda: (s := c.get(url).json())["waiting_for_model_service"] == 3 and s
        )
        assert waiting["message"].startswith("waiting for model service, next attempt at ")
        assert not waiting["done"]
        assert waiting["failed"] == 0
        item = waiting["items"][0]
        assert item["status"] == "pending"
        assert "unreachable" in item["error"]
        assert item["next_attempt_at"] is not None
        listed = c.get("/api/images", params={"status": "pending"}).json()
        assert {i["img_unique_id"] for i in listed["images"]} == {
            a["img_unique_id"] for a in batch["accepted"]
        }
        assert all(i["next_attempt_at"] for i in listed["images"])

        outage.start()
        final = wait_until(lambda: (s := c.get(url).json())["done"] and s, timeout_s=60)
    assert final["succeeded"] == 3
    assert final["message"] is None
    assert final["waiting_for_model_service"] == 0
    attempts = db_rows(
        database_url,
        "SELECT attempts, next_attempt_at, waiting_since FROM inspections WHERE batch_id = %s",
        batch["batch_id"],
    )
    assert all(a >= 2 and n is None and w is None for a, n, w in attempts)
    assert db_rows(
        database_url,
        "SELECT count(*) FROM images JOIN inspections USING (img_unique_id) WHERE batch_id = %s",
        batch["batch_id"],
    ) == [(3,)]


def test_batch_fails_after_the_window_is_listed_and_retried_in_one_call(
    tmp_path: Path, database_url: str, outage: ModelServiceProxy, deeppcb: list[Path]
) -> None:
    settings = agent_settings(
        tmp_path,
        database_url,
        outage.url,
        segformer_max_retries=1,
        batch_retry_backoff_base_s=0.5,
        batch_retry_window_s=2,
    )
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
        batch = c.post(
            "/api/upload/batch",
            files=[("images", (p.name, p.read_bytes())) for p in deeppcb[63:65]],
        ).json()
        url = f"/api/batches/{batch['batch_id']}"
        failed = wait_until(lambda: (s := c.get(url).json())["done"] and s, timeout_s=30)
        assert failed["failed"] == 2
        assert all("BATCH_RETRY_WINDOW_S" in i["error"] for i in failed["items"])
        assert all(i["attempts"] >= 2 for i in failed["items"])

        listed = c.get("/api/images", params={"status": "failed"}).json()
        assert listed["status"] == "failed"
        ids = {a["img_unique_id"] for a in batch["accepted"]}
        assert {i["img_unique_id"] for i in listed["images"]} == ids
        one = listed["images"][0]
        assert one["retry_url"].endswith(f"/api/images/{one['img_unique_id']}/retry")
        assert one["error_status_code"] == 503
        detail = c.get(f"/api/images/{one['img_unique_id']}")
        assert detail.status_code == 200
        assert detail.json()["status"] == "failed"
        assert detail.json()["error"] == one["error"]
        # The default listing is still the stored inspections only.
        stored_before = c.get("/api/images").json()["total"]
        assert not ids & {i["img_unique_id"] for i in c.get("/api/images").json()["images"]}

        outage.start()
        retried = c.post(failed["retry_url"])
        assert retried.status_code == 202
        assert set(retried.json()["retried"]) == ids
        final = wait_until(lambda: (s := c.get(url).json())["done"] and s, timeout_s=60)
        assert final["succeeded"] == 2
        assert c.get("/api/images", params={"status": "failed"}).json()["total"] == 0
        assert c.get("/api/images").json()["total"] == stored_before + 2
        missing = c.post("/api/batches/B_20260101_000000_NOPE00/retry")
        assert missing.status_code == 404
        assert missing.json()["error"] == "batch_not_found"
