"""Recorded SPC alarms (app/services/spc/alarms.py, migration 20261207_0020) on the SPC
service tests' boards (inserted directly: 20 in-control days and a bad 21st): one row per
excursion, raised once however often the check runs, cleared when a good day follows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from app.config import Settings
from app.services.database.session import create_engine, create_session_factory, libpq_conninfo
from app.services.inspection.queue import MAINTENANCE_QUEUE, SPC_TASK, create_queue
from app.services.spc.alarms import AlarmChecker, AlarmRepository, recorded
from app.services.spc.service import ChartQuery
from tests.services.history.test_rollups import _conn, add_image
from tests.services.spc.test_service import BOARDS_PER_DAY, DAYS, FIRST_DAY, _img_id, db

__all__ = ["db"]


def _check(url: str, days: int) -> tuple[list[Any], list[Any]]:
    """(alarms raised by one check over `days` days, every recorded alarm)."""
    settings = Settings(_env_file=None, database_url=url, spc_rules="1")  # type: ignore[call-arg]

    async def run() -> tuple[list[Any], list[Any]]:
        engine = create_engine(settings, url)
        sessions = create_session_factory(engine)
        try:
            query = ChartQuery(FIRST_DAY, FIRST_DAY + timedelta(days=days - 1))
            raised = await AlarmChecker(settings, sessions).run(query)
            async with sessions() as session:
                rows = await AlarmRepository(session).listing(open_only=False, limit=10)
                return raised, [recorded(r) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_an_excursion_raises_once_and_clears_when_a_good_day_follows(db: str) -> None:
    raised, stored = _check(db, DAYS)
    assert sorted((a.chart, a.class_name, a.rule, a.first_key) for a in raised) == [
        ("p", None, 1, "2026-03-21"),
        ("u", "Short", 1, "2026-03-21"),
    ]
    assert all(a.open and a.cleared_at is None for a in stored)
    assert len(stored) == 2

    again, stored = _check(db, DAYS)
    assert again == []
    assert len(stored) == 2

    good_day = FIRST_DAY + timedelta(days=DAYS)
    with _conn(db) as conn, conn.cursor() as cur:
        for n in range(BOARDS_PER_DAY):
            classes = {"Short": [(5.0, 5.0)]} if n < 10 else {}
            stamp = datetime(good_day.year, good_day.month, good_day.day, 8, n, tzinfo=UTC)
            add_image(cur, _img_id(good_day, n), stamp, classes)
        conn.commit()
    after, stored = _check(db, DAYS + 1)
    assert after == []
    assert [(a.open, a.last_key, a.cleared_at is not None) for a in stored] == [
        (False, "2026-03-21", True)
    ] * 2


def test_the_check_is_a_periodic_maintenance_job(db: str) -> None:
    queue = create_queue(libpq_conninfo(db), 2, spc_cron="*/10 * * * *")
    assert SPC_TASK in {name for name, _ in queue.periodic_registry.periodic_tasks}
    assert queue.tasks[SPC_TASK].queue == MAINTENANCE_QUEUE
    assert SPC_TASK not in {
        name for name, _ in create_queue(libpq_conninfo(db), 2).periodic_registry.periodic_tasks
    }
