"""`run_model_answer` with real parts: the agent inspects real boards with the reference
service's classical engine (the primary model service), and a second reference service
running the template (golden-board) engine answers the same stored inputs over real
HTTP. The rows, the PNGs under `answers/` and the matches are checked against the
primary result, which must stay as it was."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.config import Settings
from app.errors import ImageNotFound
from app.models.database import AnswerRegion, ModelAnswer
from app.services.database.session import create_engine, create_session_factory
from app.services.model_service.reference import (
    ReferenceService,
    free_loopback_port,
)
from app.services.models.answers import run_model_answer
from app.services.models.repository import ModelAnswerRepository
from app.services.storage import open_storage
from tests.support import AgentServer, db_rows, sample_images


def upload(client: httpx2.Client, path: Path) -> dict[str, Any]:
    response = client.post("/api/upload", files={"image": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def answer(
    settings: Settings, img_unique_id: str, url: str, **kwargs: Any
) -> tuple[int, ModelAnswer, list[AnswerRegion]]:
    engine = create_engine(settings, settings.database_url or "")
    sessions = create_session_factory(engine)
    storage = open_storage(settings)
    try:
        answer_id = await run_model_answer(
            settings, sessions, storage, img_unique_id, url, "shadow", **kwargs
        )
        async with sessions() as session:
            repo = ModelAnswerRepository(session)
            row = await repo.get(answer_id)
            regions = await repo.regions(answer_id)
        assert row is not None
        return answer_id, row, regions
    finally:
        await storage.aclose()
        await engine.dispose()


def test_shadow_answer_is_stored_apart_and_matched(
    agent: AgentServer, client: httpx2.Client, template_service: ReferenceService
) -> None:
    board = sample_images()[0]
    primary = upload(client, board)
    img_id = primary["img_unique_id"]
    before = db_rows(
        agent.settings.database_url or "",
        "SELECT region_unique_id, bbox_x, bbox_y FROM regions WHERE img_unique_id = %s ORDER BY 1",
        img_id,
    )
    answer_id, row, regions = asyncio.run(answer(agent.settings, img_id, template_service.url))
    assert row.status == "succeeded"
    assert row.error is None
    assert row.model_name == "reference-template"
    assert row.model_version
    assert row.analysis is not None
    assert "classes" in row.analysis
    for key in (row.mask_path, row.overlay_path, row.combined_path):
        assert key is not None
        assert key.startswith("answers/")
        path = agent.settings.resolved_data_dir / key
        assert path.read_bytes().startswith(b"\x89PNG")
    expected = sum(len(c["regions"]) for c in row.analysis["classes"].values())
    assert len(regions) == expected > 0
    primary_ids = {r[0] for r in before}
    matched = [r for r in regions if r.matched_region_unique_id is not None]
    # The two engines agree on most of this board's defects (same class, IoU >= 0.5).
    assert matched, "no region of the template engine matched the classical engine's"
    assert all(r.matched_region_unique_id in primary_ids for r in matched)
    assert all(r.match_iou is not None and r.match_iou >= 0.5 for r in matched)
    assert len({r.matched_region_unique_id for r in matched}) == len(matched)  # one-to-one
    # The counts kept for the comparison and the review queue's disagreement filter.
    assert (row.region_count, row.matched_count) == (len(regions), len(matched))
    assert row.primary_region_count == len(before)
    # Unmatched regions overlapping a same-class primary region, and the primary regions
    # overlapping one of them without a match ("same defect, different extent").
    overlapping = [r for r in regions if r.overlap_region_unique_id is not None]
    assert all(r.matched_region_unique_id is None for r in overlapping)
    assert all(r.overlap_region_unique_id in primary_ids for r in overlapping)
    assert row.overlapping_count == len(overlapping)
    db = agent.settings.database_url or ""
    primary_overlaps = db_rows(
        db, "SELECT region_unique_id FROM primary_overlaps WHERE answer_id = %s", answer_id
    )
    assert row.primary_overlapping_count == len(primary_overlaps)
    assert {r for (r,) in primary_overlaps} <= primary_ids - {
        r.matched_region_unique_id for r in matched
    }
    # The comparison's counts, kept by trigger in the same transaction.
    assert db_rows(
        db,
        "SELECT sum(calls), sum(matched), sum(overlapping), sum(primary_overlapping)"
        " FROM compare_counts WHERE answer_id = %s",
        answer_id,
    ) == [(len(regions), len(matched), len(overlapping), len(primary_overlaps))]
    # The primary result is untouched.
    after = db_rows(
        agent.settings.database_url or "",
        "SELECT region_unique_id, bbox_x, bbox_y FROM regions WHERE img_unique_id = %s ORDER BY 1",
        img_id,
    )
    assert after == before
    assert client.get(f"/api/images/{img_id}/regions").status_code == 200


def test_dead_service_is_recorded_as_failed(agent: AgentServer, client: httpx2.Client) -> None:
    img_id = upload(client, sample_images()[1])["img_unique_id"]
    dead = f"http://127.0.0.1:{free_loopback_port()}/"
    settings = agent.settings.model_copy(update={"segformer_max_retries": 1})
    _, row, regions = asyncio.run(answer(settings, img_id, dead))
    assert row.status == "failed"
    assert row.error is not None
    assert "unreachable" in row.error
    assert row.mask_path is None
    assert regions == []


def test_unknown_image_raises(agent: AgentServer, template_service: ReferenceService) -> None:
    with pytest.raises(ImageNotFound):
        asyncio.run(answer(agent.settings, "20990101_000000_NOPE00", template_service.url))
