"""GET /metrics: Prometheus text whose counters match what the database holds.

Counters live in the test process, shared by every agent the test session starts, so the
test compares what a scrape gained over the inspections it made with what the fresh
database gained.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from app.services.model_service.reference import free_loopback_port
from tests.conftest import agent_settings
from tests.support import REPO_ROOT, AgentServer, db_rows, make_image, serve_agent, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx2.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    found: dict[str, float] = defaultdict(float)
    for (sample, labels), value in samples.items():
        if sample == name:
            found[dict(labels)[label]] += value
    return found


def gained(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: round(v - before.get(k, 0)) for k, v in after.items() if v - before.get(k, 0)}


def test_counters_match_the_database_after_inspections(
    tmp_path: Path, agent: AgentServer, client: httpx2.Client, deeppcb: list[Path]
) -> None:
    database_url = agent.settings.database_url or ""
    before = scrape(client)

    for i in range(2):
        response = client.post("/api/upload", files={"image": (f"blank{i}.png", make_image())})
        assert response.status_code == 200, response.text
    batch_id = client.post(
        "/api/upload/batch", files=[("images", (p.name, p.read_bytes())) for p in deeppcb[:6]]
    ).json()["batch_id"]
    wait_until(lambda: client.get(f"/api/batches/{batch_id}").json()["done"])
    # A failed inspection: a second agent on the same database whose service is down.
    dead = f"http://127.0.0.1:{free_loopback_port()}/"
    settings = agent_settings(
        tmp_path, database_url, dead, segformer_max_retries=1, run_worker_in_process=False
    )
    with serve_agent(settings) as down, httpx2.Client(base_url=down.url, timeout=30) as c:
        assert c.post("/api/upload", files={"image": ("x.png", make_image())}).status_code == 503

    after = scrape(client)
    in_db = dict(db_rows(database_url, "SELECT status, count(*) FROM inspections GROUP BY status"))
    assert in_db == {"succeeded": 8, "failed": 1}
    assert gained(
        by_label(after, "aoi_inspections_total", "status"),
        by_label(before, "aoi_inspections_total", "status"),
    ) == {"succeeded": 8, "failed": 1}

    regions = dict(
        db_rows(
            database_url,
            "SELECT c.class_name, count(*) FROM regions r JOIN classes c USING (class_unique_id)"
            " GROUP BY c.class_name",
        )
    )
    assert sum(regions.values()) > 0, "DeepPCB boards have defects; the test proves nothing"
    assert (
        gained(
            by_label(after, "aoi_defect_regions_total", "class_name"),
            by_label(before, "aoi_defect_regions_total", "class_name"),
        )
        == regions
    )

    service = agent.settings.segformer_service_url or ""
    calls = gained(
        by_label(after, "aoi_model_service_request_duration_seconds_count", "service"),
        by_label(before, "aoi_model_service_request_duration_seconds_count", "service"),
    )
    assert calls == {service: 8, dead: 1}
    assert after[("aoi_model_service_up", (("service", dead),))] == 0

    jobs = dict(
        db_rows(
            database_url, "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status"
        )
    )
    queue = by_label(after, "aoi_queue_jobs", "status")
    assert {k: v for k, v in queue.items() if v} == {k: float(v) for k, v in jobs.items()}
    assert {"todo", "doing", "failed"} <= set(queue)
    assert after[("aoi_storage_free_bytes", ())] > 0

    uploads = gained(
        by_label(after, "http_requests_total", "handler"),
        by_label(before, "http_requests_total", "handler"),
    )
    assert uploads["/api/upload"] == 3, "two here, one to the agent whose service is down"
    assert uploads["/api/upload/batch"] == 1
    assert "/metrics" not in uploads, "scrapes are not counted"
    assert any(name == "http_request_duration_seconds_count" for name, _ in after)


def test_metrics_stays_out_of_the_openapi_document(client: httpx2.Client) -> None:
    assert ("aoi_storage_free_bytes", ()) in scrape(client)
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.endswith("/metrics") for p in paths)


def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set (WEB_CONCURRENCY > 1), a scrape answered by one
    process counts the inspections of all of them."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(REPO_ROOT)}
    record = (
        "from app.services.system import metrics;"
        " metrics.record_inspection_stored({'short': 2, 'open': 0})"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], env=env, check=True, cwd=REPO_ROOT)
    rendered = subprocess.run(
        [
            sys.executable,
            "-c",
            "from app.services.system import metrics; print(metrics.render().decode())",
        ],
        env=env,
        check=True,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert 'aoi_inspections_total{status="succeeded"} 2.0' in rendered
    assert 'aoi_defect_regions_total{class_name="short"} 4.0' in rendered
