"""An inspection stored twice (a job that ran again after a worker died once its rows
had committed): the second store finds the first's rows and answers with them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
from sqlalchemy import select

from app.models.database import Inspection
from app.services.database.session import create_engine, create_session_factory
from app.services.inspection.workflow import InspectionService
from app.services.model_service.pool import ModelServicePool
from app.services.model_service.reference import ReferenceService
from app.services.storage import open_storage
from tests.conftest import agent_settings
from tests.support import db_rows, serve_agent


async def test_a_second_store_of_the_same_inspection_answers_the_stored_one(
    tmp_path: Path, database_url: str, reference_service: ReferenceService, deeppcb: list[Path]
) -> None:
    settings = agent_settings(tmp_path / "data", database_url, reference_service.url)
    with serve_agent(settings) as agent:
        answer = httpx2.post(
            f"{agent.url}/api/upload",
            files={"image": ("board.jpg", deeppcb[3].read_bytes(), "image/jpeg")},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    img_unique_id = answer.json()["img_unique_id"]
    query = "SELECT count(*) FROM {} WHERE img_unique_id = %s"
    before = [db_rows(database_url, query.format(t), img_unique_id) for t in ("classes", "regions")]

    engine = create_engine(settings, database_url)
    sessions = create_session_factory(engine)
    pool = ModelServicePool(settings)
    try:
        service = InspectionService(settings, open_storage(settings), pool, sessions)
        async with sessions() as session:
            row = (
                await session.execute(
                    select(Inspection).where(Inspection.img_unique_id == img_unique_id)
                )
            ).scalar_one()
        # The image row exists: storing again hits its primary key (psycopg's
        # UniqueViolation, raised by the driver-level insert) and answers the stored one.
        outcome = await service._infer_and_store(row, time.perf_counter())
    finally:
        await pool.aclose()
        await engine.dispose()

    assert outcome.image.img_unique_id == img_unique_id
    after = [db_rows(database_url, query.format(t), img_unique_id) for t in ("classes", "regions")]
    assert after == before, "nothing stored twice"
    assert db_rows(database_url, "SELECT status FROM inspections")[0][0] == "succeeded"
    # The first store's files are still there (the second wrote the same keys).
    storage = open_storage(settings)
    assert await storage.exists(outcome.image.result_image_2_path or "")
