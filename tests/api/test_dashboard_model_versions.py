"""GET /api/dashboard/* and /api/images filtered by `model_version`, served from the
rollups split by model version (migration 20261202_0013), against the same numbers
computed from the tables.

Two model versions come from two real reference model services: the second runs with a
setting that shapes results (`REFERENCE_SERVICE_NOISE_MAX_AREA_PX`), so it reports
another version (segformer_service/inspection.py `model_version`). One agent inspects
images through the first, a second agent on the same database through the second.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.services.database.session import sqlalchemy_url
from app.services.history.dashboard import DashboardService, Period
from app.services.model_service.reference import ReferenceService, start_reference_service
from tests.conftest import agent_settings
from tests.support import serve_agent


def _upload(url: str, images: list[Path]) -> list[dict[str, Any]]:
    with httpx2.Client(base_url=url, timeout=60) as c:
        answers = []
        for path in images:
            response = c.post("/api/upload", files={"image": (path.name, path.read_bytes())})
            assert response.status_code == 200, response.text
            answers.append(response.json())
        return answers


async def _direct(database_url: str, version: str | None, day: Any) -> dict[str, Any]:
    """The three dashboard answers computed from the tables (no rollup read)."""
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with AsyncSession(engine) as session:
            service = DashboardService(session, use_rollups=False)
            return {
                "summary": (await service.summary(Period(model_version=version))).model_dump(
                    mode="json"
                ),
                "defects-per-day": (
                    await service.defects_per_day(Period(day, day, version), None)
                ).model_dump(mode="json"),
                "heatmap": (
                    await service.heatmap(Period(model_version=version), None, 16)
                ).model_dump(mode="json"),
            }
    finally:
        await engine.dispose()


def test_dashboard_filtered_by_each_model_version_equals_the_direct_numbers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    reference_service: ReferenceService,
    deeppcb: list[Path],
) -> None:
    monkeypatch.setenv("REFERENCE_SERVICE_NOISE_MAX_AREA_PX", "9")
    second = start_reference_service(tmp_path / "second-service.log")
    try:
        first_settings = agent_settings(tmp_path / "a", database_url, reference_service.url)
        with serve_agent(first_settings) as agent:
            first = _upload(agent.url, deeppcb[40:44])
        with serve_agent(agent_settings(tmp_path / "b", database_url, second.url)) as agent:
            later = _upload(agent.url, deeppcb[42:46])  # two boards seen by both models
            with httpx2.Client(base_url=agent.url, timeout=60) as c:
                versions = []
                for answers in (first, later):
                    detail = c.get(f"/api/images/{answers[0]['img_unique_id']}").json()
                    versions.append(detail["provenance"]["model_version"])
                assert versions[0] != versions[1]
                # One inspection of each version deleted (its rows leave the rollups).
                for answers in (first, later):
                    deleted = c.delete(f"/api/images/{answers[1]['img_unique_id']}")
                    assert deleted.status_code == 204, deleted.text

                day = datetime.now(UTC).date()
                totals = {}
                for version in [*versions, None, "no-such-model 1"]:
                    params = {"model_version": version} if version else {}
                    direct = asyncio.run(_direct(database_url, version, day))
                    got = {
                        "summary": c.get("/api/dashboard/summary", params=params).json(),
                        "defects-per-day": c.get(
                            "/api/dashboard/defects-per-day",
                            params={**params, "start_date": str(day), "end_date": str(day)},
                        ).json(),
                        "heatmap": c.get(
                            "/api/dashboard/heatmap", params={**params, "bins": 16}
                        ).json(),
                    }
                    assert got == direct, version
                    listed = c.get("/api/images", params=params).json()
                    assert (listed["total"], listed["total_is_exact"]) == (
                        got["summary"]["total_images"],
                        True,
                    )
                    totals[version] = got["summary"]
    finally:
        second.stop()
    assert [totals[v]["total_images"] for v in versions] == [3, 3]
    assert totals[None]["total_images"] == 6
    assert totals["no-such-model 1"]["total_images"] == 0
    for key in ("total_defects", "images_with_defects", "total_area_pixels"):
        assert totals[versions[0]][key] + totals[versions[1]][key] == totals[None][key]
    expected = sum(a["total_defects"] for a in first[:1] + first[2:] + later[:1] + later[2:])
    assert totals[None]["total_defects"] == expected
