"""Retention on real PostgreSQL and real files: passes and defects each after their own
number of days, unset = kept, rows and files together, reviewed-as-pass boards, the dry
run, a file that cannot be removed, and the pruning of finished queue jobs.

Inspections are made through the agent and the reference model service; time is moved
forward by giving the run a later `now` (the files are filed under their acceptance day,
so back-dating rows would separate them from their files).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.config import Settings
from app.services.database.session import create_engine, create_session_factory, libpq_conninfo
from app.services.inspection.queue import (
    MAINTENANCE_QUEUE,
    PRUNE_TASK,
    RETENTION_TASK,
    TASK_NAME,
    create_queue,
)
from app.services.inspection.workflow import InspectionService
from app.services.model_service.pool import ModelServicePool
from app.services.model_service.reference import ReferenceService, free_loopback_port
from app.services.retention.service import RetentionReport, RetentionService
from app.services.storage import LocalStorage, open_storage
from app.utils.ids import utc_now
from tests.conftest import agent_settings
from tests.support import (
    create_database,
    db_execute,
    db_rows,
    drop_database,
    make_image,
    serve_agent,
    wait_until,
)

LATER = timedelta(days=40)


@dataclass
class Made:
    """Inspections made for a test, by kind, and the agent's settings."""

    settings: Settings
    passes: list[str]
    defects: list[str]
    failed: list[str]
    batch_id: str


@pytest.fixture
def fresh_database(postgres_server_url: str, migrated_template: str) -> Iterator[str]:
    url = create_database(postgres_server_url, template=migrated_template)
    yield url
    drop_database(url)


@pytest.fixture
def made(
    tmp_path: Path, fresh_database: str, reference_service: ReferenceService, deeppcb: list[Path]
) -> Made:
    """Two blank boards (no defect: pass), three DeepPCB boards in a batch (defects) and
    one failed upload (its model service was down), each with a thumbnail where it has a
    result."""
    settings = agent_settings(tmp_path / "data", fresh_database, reference_service.url)
    with serve_agent(settings) as agent, httpx2.Client(base_url=agent.url, timeout=60) as c:
        passes = [
            c.post("/api/upload", files={"image": (f"b{i}.png", make_image())}).json()[
                "img_unique_id"
            ]
            for i in range(2)
        ]
        batch = c.post(
            "/api/upload/batch",
            files=[("images", (p.name, p.read_bytes())) for p in deeppcb[10:13]],
        ).json()
        wait_until(lambda: c.get(f"/api/batches/{batch['batch_id']}").json()["done"])
        defects = [item["img_unique_id"] for item in batch["accepted"]]
        for img in passes + defects:
            assert c.get(f"/api/images/{img}/thumbnail").status_code == 200
    dead = settings.model_copy(
        update={
            "segformer_service_url": f"http://127.0.0.1:{free_loopback_port()}/",
            "segformer_max_retries": 1,
            "run_worker_in_process": False,
        }
    )
    with serve_agent(dead) as agent, httpx2.Client(base_url=agent.url, timeout=60) as c:
        failed = c.post("/api/upload", files={"image": ("f.png", make_image())}).json()
    regions = db_rows(
        fresh_database,
        "SELECT count(*) FROM classes WHERE img_unique_id = ANY(%s) AND total_regions > 0",
        defects,
    )[0][0]
    assert regions > 0, "the DeepPCB boards found no defect; the test proves nothing"
    return Made(settings, passes, defects, [failed["img_unique_id"]], batch["batch_id"])


async def run_retention(settings: Settings, **options: Any) -> RetentionReport:
    engine = create_engine(settings, settings.database_url or "")
    try:
        service = RetentionService(settings, open_storage(settings), create_session_factory(engine))
        return await service.run(**options)
    finally:
        await engine.dispose()


def kept_ids(database_url: str) -> set[str]:
    return {r[0] for r in db_rows(database_url, "SELECT img_unique_id FROM inspections")}


def files_of(settings: Settings, img_unique_id: str) -> list[Path]:
    """Every file under DATA_DIR whose name or folder names the inspection."""
    data = settings.resolved_data_dir
    return [p for p in data.rglob("*") if p.is_file() and img_unique_id in str(p.relative_to(data))]


def with_days(made: Made, **days: float | bool | None) -> Settings:
    return made.settings.model_copy(update={f"retention_{k}": v for k, v in days.items()})


async def test_unset_keeps_everything(made: Made) -> None:
    report = await run_retention(made.settings, now=utc_now() + LATER)
    assert report.total == 0
    assert len(kept_ids(made.settings.database_url or "")) == 6


async def test_passes_go_after_their_days_and_defects_stay_when_unset(made: Made) -> None:
    url = made.settings.database_url or ""
    settings = with_days(made, days_pass=30)
    early = await run_retention(settings, now=utc_now() + timedelta(days=29))
    assert early.total == 0, "not yet 30 days old"
    for img in made.passes:
        assert files_of(settings, img), "the pass has files before retention"

    report = await run_retention(settings, now=utc_now() + LATER)

    assert report.counts == {"pass": 2, "defect": 0, "failed": 0}
    assert kept_ids(url) == set(made.defects + made.failed)
    assert db_rows(
        url, "SELECT count(*) FROM images WHERE img_unique_id = ANY(%s)", made.passes
    ) == [(0,)]
    for img in made.passes:
        assert files_of(settings, img) == [], "input, results and thumbnail are removed"
    for img in made.defects + made.failed:
        assert files_of(settings, img), "what is kept keeps its files"


async def test_defects_and_failed_go_with_rows_batches_and_files(made: Made) -> None:
    url = made.settings.database_url or ""
    settings = with_days(made, days_pass=60, days_defect=30)

    report = await run_retention(settings, now=utc_now() + LATER)

    assert report.counts == {"pass": 0, "defect": 3, "failed": 1}
    assert kept_ids(url) == set(made.passes)
    gone = made.defects + made.failed
    for table in ("images", "classes", "regions", "inspections"):
        assert db_rows(
            url, f"SELECT count(*) FROM {table} WHERE img_unique_id = ANY(%s)", gone
        ) == [(0,)], table
    assert db_rows(url, "SELECT count(*) FROM batches WHERE batch_id = %s", made.batch_id) == [
        (0,)
    ], "the emptied batch goes too"
    for img in gone:
        assert files_of(settings, img) == []


async def test_many_chunks_delete_the_same(made: Made, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.services.retention.service.CHUNK", 2)
    settings = with_days(made, days_pass=30, days_defect=30)

    report = await run_retention(settings, now=utc_now() + LATER)

    assert report.counts == {"pass": 2, "defect": 3, "failed": 1}
    assert kept_ids(made.settings.database_url or "") == set()


async def test_a_board_reviewed_as_pass_goes_after_the_pass_days(made: Made) -> None:
    """A defect board reviewed as pass (`image_dispositions`) goes after the pass days; a
    board without defects dispositioned scrap is kept for the defect days."""
    url = made.settings.database_url or ""
    insert = (
        "INSERT INTO image_dispositions (img_unique_id, disposition, reviewer)"
        " VALUES (%s, %s, 'anna')"
    )
    db_execute(url, insert, made.defects[0], "pass")
    db_execute(url, insert, made.passes[0], "scrap")

    report = await run_retention(with_days(made, days_pass=30), now=utc_now() + LATER)

    assert report.counts == {"pass": 2, "defect": 0, "failed": 0}
    assert kept_ids(url) == {made.passes[0], *made.defects[1:], *made.failed}


async def test_dry_run_reports_and_deletes_nothing(made: Made) -> None:
    url = made.settings.database_url or ""
    settings = with_days(made, days_pass=30, days_defect=30, dry_run=True)

    report = await run_retention(settings, now=utc_now() + LATER)

    assert report.dry_run
    assert report.counts == {"pass": 2, "defect": 3, "failed": 1}
    assert sorted(report.examples["pass"]) == sorted(made.passes)
    assert len(kept_ids(url)) == 6
    for img in made.passes + made.defects + made.failed:
        assert files_of(settings, img)


async def test_files_that_cannot_be_removed_are_left_to_the_orphan_sweep(
    made: Made, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A storage failure (forced: a real disk cannot be made to refuse on demand) after the
    rows went: the run goes on, counts it, and the orphan-file sweep removes the files."""
    settings = with_days(made, days_pass=30)
    victim = made.passes[0]
    real = LocalStorage.remove_inspection_files

    async def failing(
        self: LocalStorage, input_stored: Any, img_unique_id: str, accepted_at: Any
    ) -> None:
        if img_unique_id == victim:
            raise OSError("the store refused")
        await real(self, input_stored, img_unique_id, accepted_at)

    monkeypatch.setattr(LocalStorage, "remove_inspection_files", failing)
    report = await run_retention(settings, now=utc_now() + LATER)
    monkeypatch.undo()

    assert report.counts["pass"] == 2
    assert report.file_errors == 1
    assert victim not in kept_ids(made.settings.database_url or "")
    assert files_of(settings, victim), "left behind by the failure"
    engine = create_engine(settings, settings.database_url or "")
    pool = ModelServicePool(settings)
    try:
        service = InspectionService(
            settings, open_storage(settings), pool, create_session_factory(engine)
        )
        await service.remove_orphan_files(grace_s=0)
    finally:
        await pool.aclose()
        await engine.dispose()
    leftover = [p for p in files_of(settings, victim) if "thumbnails" not in p.parts]
    assert leftover == [], "no file outlives its rows"


async def test_finished_queue_jobs_are_pruned_after_a_day(fresh_database: str) -> None:
    app = create_queue(
        libpq_conninfo(fresh_database),
        2,
        retention_cron="*/15 * * * *",
        keep_finished_jobs_hours=24,
    )
    registered = {name for name, _ in app.periodic_registry.periodic_tasks}
    assert registered == {PRUNE_TASK, RETENTION_TASK}
    assert app.tasks[RETENTION_TASK].queue == MAINTENANCE_QUEUE
    async with app.open_async():
        task = app.tasks[TASK_NAME]
        ids = [await task.defer_async(img_unique_id=f"I{i}") for i in range(3)]
        old_failed, new_failed, waiting = ids
        db_execute(
            fresh_database,
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = ANY(%s)",
            [old_failed, new_failed],
        )
        db_execute(
            fresh_database,
            "UPDATE procrastinate_events SET at = now() - interval '25 hours' WHERE job_id = %s",
            old_failed,
        )
        context = types.SimpleNamespace(app=app)
        await app.tasks[PRUNE_TASK].func(context, timestamp=0)  # type: ignore[call-arg]
    left = {r[0] for r in db_rows(fresh_database, "SELECT id FROM procrastinate_jobs")}
    assert left == {new_failed, waiting}


def test_no_retention_job_is_scheduled_while_retention_is_off(fresh_database: str) -> None:
    app = create_queue(libpq_conninfo(fresh_database), 2)
    assert {name for name, _ in app.periodic_registry.periodic_tasks} == {PRUNE_TASK}
