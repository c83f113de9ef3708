"""Shadow model services end to end, with real parts: the agent (real PostgreSQL, its
procrastinate queue) inspects real boards with the reference service's classical engine;
a second reference service with the template (golden-board) engine is its shadow, over
real HTTP; a third shadow URL is a closed port (a dead service)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.services.model_service.reference import (
    ReferenceService,
    free_loopback_port,
)
from app.services.models.shadow import in_shadow_sample
from tests.conftest import agent_settings
from tests.support import AgentServer, db_rows, sample_images, serve_agent, wait_until


@pytest.fixture(scope="module")
def shadowed_agent(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
    template_service: ReferenceService,
) -> Iterator[AgentServer]:
    """The agent with two shadows: the template engine and a dead URL; every inspection
    sampled; two attempts 0.2 s apart."""
    dead = f"http://127.0.0.1:{free_loopback_port()}/"
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        shadow_service_urls=[template_service.url, dead],
        shadow_sample_rate=1.0,
        shadow_concurrency=2,
        shadow_max_attempts=2,
        shadow_retry_base_s=0.2,
        segformer_max_retries=1,
    )
    with serve_agent(settings) as server:
        yield server


def answers(agent: AgentServer, img_id: str) -> list[tuple[str, str, str | None, str | None]]:
    return [
        (str(r[0]), str(r[1]), r[2], r[3])
        for r in db_rows(
            agent.settings.database_url or "",
            "SELECT model_service_url, status, model_name, error FROM model_answers"
            " WHERE img_unique_id = %s ORDER BY model_service_url",
            img_id,
        )
    ]


def test_single_upload_gets_shadow_answers_and_primary_is_unchanged(
    shadowed_agent: AgentServer, template_service: ReferenceService, tmp_path: Path
) -> None:
    board = sample_images()[2]
    with httpx2.Client(base_url=shadowed_agent.url, timeout=60) as client:
        response = client.post("/api/upload", files={"image": (board.name, board.read_bytes())})
        assert response.status_code == 200, response.text
        body = response.json()
        img_id = body["img_unique_id"]
        rows = wait_until(lambda: (r := answers(shadowed_agent, img_id)) and len(r) == 2 and r)
        by_url = {r[0]: r for r in rows}
        ok = by_url[template_service.url]
        assert ok[1] == "succeeded"
        assert ok[2] == "reference-template"
        dead = next(r for url, r in by_url.items() if url != template_service.url)
        assert dead[1] == "failed"
        assert dead[3] is not None
        assert "unreachable" in dead[3]
        # The primary answer, rows and ledger are the classical engine's alone.
        primary = db_rows(
            shadowed_agent.settings.database_url or "",
            "SELECT model_name, status FROM inspections WHERE img_unique_id = %s",
            img_id,
        )
        assert primary == [("reference-classical", "succeeded")]
        (stored,) = db_rows(
            shadowed_agent.settings.database_url or "",
            "SELECT count(*) FROM regions WHERE img_unique_id = %s",
            img_id,
        )
        assert stored[0] == body["total_defects"]
    # No result file of the shadow lies under results/.
    results = shadowed_agent.settings.resolved_data_dir / "results"
    assert not [p for p in results.rglob("*") if "answers" in p.parts]


def test_batch_images_get_shadow_answers(
    shadowed_agent: AgentServer, template_service: ReferenceService
) -> None:
    boards = sample_images()[3:5]
    with httpx2.Client(base_url=shadowed_agent.url, timeout=60) as client:
        files = [("images", (b.name, b.read_bytes())) for b in boards]
        response = client.post("/api/upload/batch", params={"wait": "true"}, files=files)
        assert response.status_code == 200, response.text
    ids = [
        r[0]
        for r in db_rows(
            shadowed_agent.settings.database_url or "",
            "SELECT img_unique_id FROM inspections WHERE batch_id IS NOT NULL",
        )
    ]
    assert len(ids) == 2
    for img_id in ids:
        rows = wait_until(lambda i=img_id: (r := answers(shadowed_agent, i)) and len(r) == 2 and r)
        assert sorted(r[1] for r in rows) == ["failed", "succeeded"]


def test_sample_is_a_stable_share() -> None:
    ids = [f"20260101_000000_{n:06d}" for n in range(4000)]
    chosen = [i for i in ids if in_shadow_sample(i, 0.25)]
    assert 0.22 < len(chosen) / len(ids) < 0.28
    assert chosen == [i for i in ids if in_shadow_sample(i, 0.25)]
    assert not any(in_shadow_sample(i, 0.0) for i in ids)
    assert all(in_shadow_sample(i, 1.0) for i in ids)
