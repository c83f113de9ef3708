"""GET /api/health and /api/stats."""

from __future__ import annotations

from pathlib import Path

import httpx2

from tests.conftest import agent_settings
from tests.support import AgentServer, serve_agent


def test_health_reports_every_part(client: httpx2.Client, agent: AgentServer) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["model_service"]["ok"]
    assert body["model_service"]["url"] == agent.settings.segformer_service_url
    assert body["disk"]["free_bytes"] > 0


def test_health_is_503_when_the_database_is_down(
    tmp_path: Path, postgres_server_url: str, reference_service: object
) -> None:
    """A database that does not exist stands for one that is down."""
    from tests.support import database_url

    settings = agent_settings(
        tmp_path, database_url(postgres_server_url, "aoi_no_such_db"),
        reference_service.url,  # type: ignore[attr-defined]
        run_worker_in_process=False,
    )
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url) as c:
        response = c.get("/api/health")
        assert response.status_code == 503
        assert response.json()["status"] == "down"
        assert not response.json()["database"]["ok"]


def test_stats_count_images_defects_and_classes(
    client: httpx2.Client, deeppcb: list[Path]
) -> None:
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
