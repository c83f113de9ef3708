"""The orphan-file sweep (`app.services.inspection.orphans`): one listing of the store per
interval for the whole deployment, and only the recent day folders between full listings.

Each "process" is an `OrphanFileSweep` with its own database engine and its own storage
object on the same store (a folder, or a bucket of moto's S3 server — an emulator of the
S3 API — on loopback), as two agent processes on two machines have; the database is a real
PostgreSQL, so the advisory lock and the record are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.config import Settings
from app.services.database.session import create_engine, create_session_factory
from app.services.inspection.orphans import OrphanFileSweep, day_folders
from app.services.storage import Storage, StoredObject, open_storage
from tests.services.storage.conftest import storage_settings
from tests.support import S3Emulator, create_database, db_execute, db_rows, drop_database

GRACE_S = 0.0
INTERVAL_S = 3600.0
OLD_DAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OTHER_OLD_DAY = datetime(2026, 1, 4, 8, 0, tzinfo=UTC)


class Process:
    """One agent process's view: its engine, its storage object, its sweep, and the
    prefixes its storage listed.

    `list_objects` of the storage object is wrapped (the real listing still runs) only to
    count the listings, which neither backend reports.
    """

    @property
    def store_listings(self) -> list[str]:
        """The listings of the store or of its day folders; left out: the listing of one
        inspection's result folder that deleting it costs on S3 (`delete_prefix`)."""
        return [prefix for prefix in self.listed if prefix.count("/") <= 2]

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.engine = create_engine(
            settings.model_copy(update={"db_pool_min_size": 1}), database_url
        )
        self.storage = open_storage(settings)
        self.listed: list[str] = []
        self.gate: asyncio.Event | None = None
        self.listing = asyncio.Event()
        real = self.storage.list_objects

        async def counted(prefix: str) -> AsyncIterator[StoredObject]:
            self.listed.append(prefix)
            self.listing.set()
            if self.gate is not None:
                await self.gate.wait()
            async for obj in real(prefix):
                yield obj

        self.storage.list_objects = counted  # type: ignore[method-assign]
        self.sweep = OrphanFileSweep(self.storage, create_session_factory(self.engine))

    async def close(self) -> None:
        await self.storage.aclose()
        await self.engine.dispose()


@pytest.fixture
def fresh_url(postgres_server_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh migrated database per test: the sweep's record starts empty."""
    url = create_database(postgres_server_url, template=migrated_template)
    yield url
    drop_database(url)


@pytest.fixture(params=["local", "s3"])
async def processes(
    request: pytest.FixtureRequest, tmp_path: Path, fresh_url: str, s3_emulator: S3Emulator
) -> AsyncIterator[Callable[[], Process]]:
    """Makes agent processes sharing one store (a folder, or a bucket) and one database."""
    if request.param == "local":
        settings = storage_settings(tmp_path)
    else:
        settings = storage_settings(
            tmp_path,
            storage_url=f"s3://{s3_emulator.new_bucket()}/plant-7",
            s3_endpoint_url=s3_emulator.url,
        )
    made: list[Process] = []

    def make() -> Process:
        made.append(Process(settings, fresh_url))
        made[-1].storage.ensure_directories()
        return made[-1]

    yield make
    for process in made:
        await process.close()


async def _orphan(storage: Storage, img_id: str, accepted: datetime) -> tuple[str, str]:
    """An input and a result folder no row names (what a kill leaves); their keys."""
    key = storage.input_key(img_id, accepted, "board.png", ".png")
    await storage.put(key, b"input", "image/png")
    await storage.put(storage.result_key(img_id, accepted, "combined"), b"png", "image/png")
    return key, storage.result_prefix(img_id, accepted)


async def _keys(storage: Storage, prefix: str) -> set[str]:
    return {obj.key async for obj in storage.list_objects(prefix)}


def _age_record(url: str, by: timedelta, *, full_too: bool = False) -> None:
    """Move the last sweep (and with `full_too` the last full one) back by `by`, as if that
    much time had passed since."""
    db_execute(url, "UPDATE file_sweeps SET started_at = started_at - %s", by)
    if full_too:
        db_execute(url, "UPDATE file_sweeps SET full_started_at = full_started_at - %s", by)


async def test_two_processes_in_one_interval_list_the_store_once(
    processes: Callable[[], Process], fresh_url: str
) -> None:
    first, second = processes(), processes()
    now = datetime.now(UTC)
    input_key, result_prefix = await _orphan(first.storage, "20261202_093005_ORP001", now)
    named = first.storage.input_key("20261202_093005_KEP002", now, "kept.png", ".png")
    await first.storage.put(named, b"input", "image/png")
    db_execute(
        fresh_url,
        "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
        " size_bytes, media_type, status, attempts) VALUES (%s, 'kept.png', %s, 5,"
        " 'image/png', 'failed', 1)",
        "20261202_093005_KEP002",
        named,
    )

    ran = await first.sweep.run_when_due(GRACE_S, INTERVAL_S)
    again = await second.sweep.run_when_due(GRACE_S, INTERVAL_S)

    assert ran.state == "swept"
    assert ran.full, "the first sweep of a deployment lists the whole store"
    assert ran.removed == {"inputs": 1, "result_folders": 1, "answer_folders": 0}
    assert first.store_listings == ["uploads/", "results/", "answers/"]
    assert again.state == "not_due"
    assert second.listed == [], "the second process did not list the store"
    assert await _keys(first.storage, "uploads/") == {named}, "the named input stays"
    assert not await first.storage.exists(input_key)
    assert await _keys(first.storage, result_prefix) == set()
    assert len(db_rows(fresh_url, "SELECT * FROM file_sweeps")) == 1


async def test_a_process_finding_another_sweeping_skips_without_waiting(
    processes: Callable[[], Process],
) -> None:
    """Both processes find the sweep due at the same moment; the first holds the lock while
    it lists (held open by a gate in its listing), and the second skips at once."""
    first, second = processes(), processes()
    first.gate = asyncio.Event()
    sweeping = asyncio.create_task(first.sweep.run_when_due(GRACE_S, INTERVAL_S))
    await asyncio.wait_for(first.listing.wait(), 10)

    busy = await asyncio.wait_for(second.sweep.run_when_due(GRACE_S, INTERVAL_S), 10)
    first.gate.set()
    ran = await sweeping
    after = await second.sweep.run_when_due(GRACE_S, INTERVAL_S)

    assert (busy.state, ran.state, after.state) == ("busy", "swept", "not_due")
    assert second.listed == []


async def test_later_sweeps_list_only_the_recent_day_folders(
    processes: Callable[[], Process], fresh_url: str
) -> None:
    first, second = processes(), processes()
    assert (await first.sweep.run_when_due(GRACE_S, INTERVAL_S)).full
    now = datetime.now(UTC)
    recent_input, recent_results = await _orphan(first.storage, "20261202_093005_ORP003", now)
    old_input, old_results = await _orphan(first.storage, "20260104_080000_ORP004", OTHER_OLD_DAY)
    # A failed inspection of an old day, retried now: its results land in the old day folder.
    retried = "20260105_080000_RTR005"
    _, retried_results = await _orphan(first.storage, retried, OLD_DAY)
    db_execute(
        fresh_url,
        "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
        " size_bytes, media_type, status, attempts, created_at, updated_at) VALUES"
        " (%s, 'r.png', %s, 5, 'image/png', 'failed', 2, %s, now())",
        retried,
        first.storage.input_key(retried, OLD_DAY, "board.png", ".png"),
        OLD_DAY,
    )
    _age_record(fresh_url, timedelta(seconds=INTERVAL_S))

    ran = await second.sweep.run_when_due(GRACE_S, INTERVAL_S)

    assert ran.state == "swept"
    assert not ran.full
    today = day_folders(now, now)[0]
    assert today in ran.input_days
    assert "20260105" not in ran.input_days
    assert "20260104" not in ran.result_days
    assert set(ran.result_days) == {*ran.input_days, "20260105"}
    assert second.store_listings == [
        *(f"uploads/{day}/" for day in ran.input_days),
        *(f"results/{day}/" for day in ran.result_days),
        *(f"answers/{day}/" for day in ran.answer_days),
    ]
    assert not await second.storage.exists(recent_input)
    assert await _keys(second.storage, recent_results) == set()
    assert await _keys(second.storage, retried_results) == set()
    # An old day folder no inspection changed in is left to the daily full listing.
    assert await second.storage.exists(old_input)
    assert await _keys(second.storage, old_results)

    _age_record(fresh_url, timedelta(days=1), full_too=True)
    daily = await first.sweep.run_when_due(GRACE_S, INTERVAL_S)

    assert daily.full
    assert not await first.storage.exists(old_input)
    assert await _keys(first.storage, old_results) == set()


def _stored_image(url: str, img_id: str, accepted: datetime) -> None:
    db_execute(
        url,
        "INSERT INTO images (img_unique_id, image_height, image_width,"
        " processing_time_seconds, timestamp, input_image_path) VALUES"
        " (%s, 480, 640, 0.5, %s, 'uploads/x.png')",
        img_id,
        accepted,
    )


async def _answer_folder(
    storage: Storage, url: str | None, img_id: str, accepted: datetime, token: str
) -> str:
    """The three PNGs of a shadow/replay answer; with `url`, its `model_answers` row too
    (without: what a kill between the files and the row leaves). The folder's prefix."""
    prefix = f"{storage.answers_prefix(img_id, accepted)}{token}/"
    for name in ("combined", "mask", "overlay"):
        await storage.put(f"{prefix}{name}.png", b"png", "image/png")
    if url is not None:
        db_execute(
            url,
            "INSERT INTO model_answers (img_unique_id, role, model_service_url, status,"
            " mask_path, overlay_path, combined_path) VALUES (%s, 'replay', 'http://m/',"
            " 'succeeded', %s, %s, %s)",
            img_id,
            f"{prefix}mask.png",
            f"{prefix}overlay.png",
            f"{prefix}combined.png",
        )
    return prefix


async def test_answer_folders_no_row_names_go_and_named_ones_stay(
    processes: Callable[[], Process], fresh_url: str
) -> None:
    """Shadow and replay answers (`answers/`): a folder whose `model_answers` row exists
    stays, in a full sweep and in the incremental one (an old board replayed today: its
    answers lie in its old day folder); a folder a kill left without a row goes, beside a
    named one of the same board or under a board whose row is gone."""
    first, second = processes(), processes()
    now = datetime.now(UTC)
    board = "20261202_093005_ANS001"
    _stored_image(fresh_url, board, now)
    named = await _answer_folder(first.storage, fresh_url, board, now, "a" * 16)
    beside = await _answer_folder(first.storage, None, board, now, "b" * 16)
    no_board = await _answer_folder(first.storage, None, "20261202_093005_GONE02", now, "c" * 16)

    ran = await first.sweep.run_when_due(GRACE_S, INTERVAL_S)

    assert ran.full
    assert ran.removed["answer_folders"] == 2
    assert len(await _keys(first.storage, named)) == 3, "a named answer stays whole"
    assert await _keys(first.storage, beside) == set()
    assert await _keys(first.storage, no_board) == set()

    # An old board replayed now: the incremental sweep lists its old day folder.
    old = "20260105_080000_ANS003"
    _stored_image(fresh_url, old, OLD_DAY)
    old_named = await _answer_folder(first.storage, fresh_url, old, OLD_DAY, "d" * 16)
    old_orphan = await _answer_folder(first.storage, None, old, OLD_DAY, "e" * 16)
    _age_record(fresh_url, timedelta(seconds=INTERVAL_S))

    later = await second.sweep.run_when_due(GRACE_S, INTERVAL_S)

    assert later.state == "swept"
    assert not later.full
    assert "20260105" in later.answer_days
    assert "20260105" not in later.input_days
    assert later.removed["answer_folders"] == 1
    assert await _keys(second.storage, old_orphan) == set()
    assert len(await _keys(second.storage, old_named)) == 3
    assert len(await _keys(second.storage, named)) == 3


async def test_a_restarted_process_sweeps_at_once_unless_another_swept_since(
    processes: Callable[[], Process], fresh_url: str
) -> None:
    """A process killed mid-write leaves files; the one started after it sweeps at its
    first tick though the interval has not passed, but not when another process swept
    after it started."""
    first = processes()
    assert (await first.sweep.run_when_due(GRACE_S, INTERVAL_S)).state == "swept"
    _age_record(fresh_url, timedelta(seconds=30))
    leftover, _ = await _orphan(first.storage, "20261202_093005_ORP006", datetime.now(UTC))
    restarted = processes()

    # Started 60 s ago: the last sweep (30 s ago) saw what was there when it started.
    skipped = await restarted.sweep.run_when_due(GRACE_S, INTERVAL_S, running_for_s=60)
    # Started 1 s ago: the last sweep is older than this process.
    ran = await restarted.sweep.run_when_due(GRACE_S, INTERVAL_S, running_for_s=1)

    assert skipped.state == "not_due"
    assert ran.state == "swept"
    assert not ran.full
    assert not await restarted.storage.exists(leftover)


async def test_retention_that_left_files_makes_the_next_sweep_full(
    processes: Callable[[], Process], fresh_url: str
) -> None:
    """`forget_horizon`, what a retention run with `file_errors` calls, sends the next sweep
    through the whole store, where the old day folders are."""
    from app.services.database.session import unit_of_work
    from app.services.inspection.orphans import ORPHAN_FILES
    from app.services.retention.repository import FileSweepRepository

    process = processes()
    assert (await process.sweep.run_when_due(GRACE_S, INTERVAL_S)).full
    old_input, _ = await _orphan(process.storage, "20260105_080000_ORP007", OLD_DAY)
    async with unit_of_work(process.sweep.sessions) as session:
        await FileSweepRepository(session).forget_horizon(ORPHAN_FILES)
    _age_record(fresh_url, timedelta(seconds=INTERVAL_S))

    ran = await process.sweep.run_when_due(GRACE_S, INTERVAL_S)

    assert ran.full
    assert not await process.storage.exists(old_input)
