"""GET /api/health and /api/stats."""

from __future__ import annotations

from pathlib import Path

import httpx2

from app.services.model_service.reference import ReferenceService, free_loopback_port
from tests.conftest import agent_settings
from tests.support import (
    AgentServer,
    admin_connect,
    create_database,
    drop_database,
    serve_agent,
)


def test_health_reports_every_part(client: httpx2.Client, agent: AgentServer) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"]
    assert body["model_service"]["ok"]
    assert body["model_service"]["url"] == agent.settings.segformer_service_url
    assert body["disk"]["free_bytes"] > 0
    assert body["detail"] is None
    assert "health check passed" in body["model_service"]["detail"]


def test_health_is_degraded_when_the_url_is_not_the_model_service(
    tmp_path: Path, database_url: str, reference_service: ReferenceService, deeppcb: list[Path]
) -> None:
    """A real server that answers 404 (the reference service under a wrong path) is not a
    healthy model service, and after a failed upload the last inference says why."""
    wrong = reference_service.url.rstrip("/") + "/not-the-service/"
    settings = agent_settings(tmp_path, database_url, wrong, run_worker_in_process=False)
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=30) as c:
        body = c.get("/api/health").json()
        assert body["status"] == "degraded"
        assert not body["model_service"]["ok"]
        assert "HTTP 404" in body["detail"]
        assert body["model_service"]["last_inference"] is None
        upload = c.post("/api/upload", files={"image": ("a.jpg", deeppcb[0].read_bytes())})
        assert upload.status_code == 502
        last = c.get("/api/health").json()["model_service"]["last_inference"]
        assert last["ok"] is False
        assert "HTTP 404" in last["detail"]


def test_health_is_degraded_when_the_model_service_is_unreachable(
    tmp_path: Path, database_url: str
) -> None:
    url = f"http://127.0.0.1:{free_loopback_port()}/"
    settings = agent_settings(tmp_path, database_url, url, run_worker_in_process=False)
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=30) as c:
        response = c.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["detail"].startswith(f"the model service at {url} fails, so uploads fail")
    assert "ConnectError" in body["detail"]


def test_health_is_503_while_the_database_is_down_and_recovers(
    tmp_path: Path, postgres_server_url: str, migrated_template: str, reference_service: object
) -> None:
    """The outage is real: the database refuses new connections and its sessions are killed."""
    url = create_database(postgres_server_url, template=migrated_template)
    name = url.rsplit("/", 1)[-1].split("?", 1)[0]
    settings = agent_settings(
        tmp_path,
        url,
        reference_service.url,  # type: ignore[attr-defined]
        run_worker_in_process=False,
    )
    try:
        with serve_agent(settings) as server, httpx2.Client(base_url=server.url) as c:
            assert c.get("/api/health").status_code == 200
            with admin_connect(postgres_server_url) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
            response = c.get("/api/health")
            assert response.status_code == 503
            assert response.json()["status"] == "down"
            assert not response.json()["database"]["ok"]
            listing = c.get("/api/images")
            assert listing.status_code == 503
            assert listing.json()["error"] == "database_unavailable"
            with admin_connect(postgres_server_url) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert c.get("/api/health").status_code == 200
    finally:
        with admin_connect(postgres_server_url) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        drop_database(url)


def test_stats_count_images_defects_and_classes(client: httpx2.Client, deeppcb: list[Path]) -> None:
    answers = [
        client.post("/api/upload", files={"image": (p.name, p.read_bytes())}).json()
        for p in deeppcb[40:42]
    ]
    stats = client.get("/api/stats").json()
    assert stats["total_images"] == 2
    assert stats["total_defects"] == sum(a["total_defects"] for a in answers)
    by_class = {c["class_name"]: c["regions"] for c in stats["defects_by_class"]}
    for answer in answers:
        for name in answer["defect_classes"]:
            assert name in by_class
    assert [u["img_unique_id"] for u in stats["recent_uploads"]] == [
        a["img_unique_id"] for a in reversed(answers)
    ]
    assert stats["mean_model_service_seconds"] > 0
