"""Failures that heal: a kill during batch acceptance leaves no orphan once the agent is
back; the recovery sweep never fails a live upload; a retry of a running one is 409."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.errors import StoredFileMissing
from app.services.database.session import create_engine, create_session_factory
from app.services.inspection.repository import INTERRUPTED_ERROR
from app.services.inspection.workflow import InspectionService
from app.services.model_service.pool import ModelServicePool
from app.services.model_service.reference import ReferenceService
from app.services.storage import open_storage
from tests.conftest import agent_settings
from tests.services.cfx.sdk import check_envelope
from tests.support import (
    AgentProcess,
    ModelServiceProxy,
    db_execute,
    db_rows,
    make_image,
    serve_agent,
    wait_until,
)


def _files(folder: Path, pattern: str = "*") -> list[Path]:
    return [p for p in folder.rglob(pattern) if p.is_file()] if folder.is_dir() else []


def _inputs(data: Path) -> list[Path]:
    return [p for p in _files(data / "uploads") if ".incoming" not in p.parts]


def _orphans(data: Path, database_url: str) -> dict[str, list[str]]:
    """Files no row names: `.part` files, inputs without a ledger row, result folders
    without an `images` row."""
    named = {
        path
        for (path,) in db_rows(
            database_url,
            "SELECT input_image_path FROM inspections UNION SELECT input_image_path FROM images",
        )
    }
    image_ids = {i for (i,) in db_rows(database_url, "SELECT img_unique_id FROM images")}
    results = data / "results"
    folders = [f for f in results.glob("*/*") if f.is_dir()] if results.is_dir() else []
    return {
        "part": [p.name for p in _files(data / "uploads" / ".incoming")],
        "inputs": [p.name for p in _inputs(data) if p.relative_to(data).as_posix() not in named],
        "results": [f.name for f in folders if f.name not in image_ids],
    }


@pytest.mark.parametrize("moment", ["receiving", "accepting"])
def test_kill_during_batch_acceptance_leaves_nothing_orphaned_after_restart(
    agent_process: AgentProcess,
    database_url: str,
    deeppcb: list[Path],
    tmp_path: Path,
    moment: str,
) -> None:
    """The agent (a real `run.py` child) is killed while a 100-image batch is being
    received (`.part` files on disk) or accepted (inputs moved into place, no ledger row
    committed yet). After a restart, the start-up sweep removes every file no row names."""
    data = tmp_path / "data"
    images = deeppcb[:100]
    agent_process.start()
    rows_before = db_rows(database_url, "SELECT count(*) FROM inspections")

    def send() -> None:
        with contextlib.suppress(httpx2.HTTPError):  # the agent is killed under the request
            httpx2.post(
                agent_process.url + "/api/upload/batch",
                files=[("images", (p.name, p.read_bytes())) for p in images],
                timeout=60,
            )

    def caught() -> bool:
        if moment == "receiving":
            return bool(_files(data / "uploads" / ".incoming"))
        return bool(_inputs(data)) and (
            db_rows(database_url, "SELECT count(*) FROM inspections") == rows_before
        )

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 30
    while not caught():
        assert time.monotonic() < deadline, "never saw the moment to kill"
        time.sleep(0.002)
    agent_process.kill()
    sender.join(60)
    left = _orphans(data, database_url)
    assert left["part"] or left["inputs"], "nothing was left behind; the test proves nothing"
    assert db_rows(database_url, "SELECT count(*) FROM inspections") == rows_before

    agent_process.env["ORPHAN_FILE_GRACE_S"] = "0"
    agent_process.start()
    wait_until(
        lambda: _orphans(data, database_url) == {"part": [], "inputs": [], "results": []},
        timeout_s=30,
    )
    assert _inputs(data) == []
    with httpx2.Client(base_url=agent_process.url, timeout=60) as client:
        # The agent still works: the same batch is accepted and inspected afterwards.
        answer = client.post(
            "/api/upload/batch?wait=true",
            files=[("images", (p.name, p.read_bytes())) for p in images[:3]],
        ).json()
    assert answer["status"]["succeeded"] == 3
    assert _orphans(data, database_url) == {"part": [], "inputs": [], "results": []}


@pytest.fixture
def slow_service(reference_service: ReferenceService) -> Iterator[ModelServiceProxy]:
    proxy = ModelServiceProxy(reference_service.url).start()
    yield proxy
    proxy.stop()


def test_a_slow_single_upload_is_never_marked_interrupted_and_retry_is_409(
    tmp_path: Path, database_url: str, slow_service: ModelServiceProxy, deeppcb: list[Path]
) -> None:
    """The model service (the reference one behind a delaying proxy, as it cannot be slow
    on demand) takes 4 s while the recovery sweep runs three times a second: the upload is
    left alone, a retry meanwhile is 409, and inference runs once."""
    slow_service.delay_s = 4
    settings = agent_settings(
        tmp_path, database_url, slow_service.url, stalled_job_after_s=1, segformer_timeout_s=20
    )
    answers: list[httpx2.Response] = []
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
        upload = threading.Thread(
            target=lambda: answers.append(
                c.post("/api/upload", files={"image": ("slow.jpg", deeppcb[3].read_bytes())})
            )
        )
        upload.start()
        (img_unique_id,) = wait_until(
            lambda: db_rows(
                database_url,
                "SELECT img_unique_id FROM inspections WHERE original_filename = 'slow.jpg'"
                " AND status = 'processing'",
            )
        )[0]
        time.sleep(2)  # six sweeps
        retry = c.post(f"/api/images/{img_unique_id}/retry")
        assert retry.status_code == 409
        assert retry.json()["error"] == "not_retryable"
        assert "processing" in retry.json()["detail"]
        detail = c.get(f"/api/images/{img_unique_id}").json()
        assert detail["status"] == "processing"
        upload.join(30)
    assert answers[0].status_code == 200
    assert answers[0].json()["img_unique_id"] == img_unique_id
    assert slow_service.calls == 1
    assert db_rows(
        database_url,
        "SELECT status, attempts, last_error FROM inspections WHERE img_unique_id = %s",
        img_unique_id,
    ) == [("succeeded", 1, None)]


def test_an_upload_whose_process_died_is_failed_by_another_process(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> None:
    """A `processing` row owned by a process whose heartbeat stopped (its row is old) is
    failed by the sweep of a live agent, and can then be retried."""
    db_execute(
        database_url,
        "INSERT INTO agent_processes (process_id, hostname, pid, last_seen)"
        " VALUES ('dead0000000000000000000000000000', 'gone', 1, now() - interval '1 hour')",
    )
    image = tmp_path / "data" / "uploads" / "20261122" / "x_20261122_050000_DEAD01_a.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(make_image())
    db_execute(
        database_url,
        "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
        " size_bytes, media_type, status, attempts, owner_process_id)"
        " VALUES ('20261122_050000_DEAD01', 'a.png', %s, 100, 'image/png', 'processing', 1,"
        " 'dead0000000000000000000000000000')",
        image.relative_to(tmp_path / "data").as_posix(),
    )
    settings = agent_settings(tmp_path / "data", database_url, reference_service.url)
    with serve_agent(settings) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
        wait_until(lambda: c.get("/api/images/20261122_050000_DEAD01").json()["status"] == "failed")
        detail = c.get("/api/images/20261122_050000_DEAD01").json()
        assert detail["error"].startswith("interrupted")
        assert detail["retry_url"].endswith("/api/images/20261122_050000_DEAD01/retry")
        assert c.post(detail["retry_url"]).status_code == 200
        alive = db_rows(
            database_url, "SELECT pid, last_seen > now() - interval '10 s' FROM agent_processes"
        )
    assert (os.getpid(), True) in alive


def test_a_batch_image_a_live_process_is_inspecting_is_not_inspected_twice(
    tmp_path: Path, database_url: str, slow_service: ModelServiceProxy, deeppcb: list[Path]
) -> None:
    """A batch image `processing` in another live process (its heartbeat is kept fresh by
    the test) and with no job: the sweep queues it again, but the job does not run a second
    inference. Once that process falls silent, the image is inspected here, once."""
    data = tmp_path / "data"
    image = data / "uploads" / "20261122" / "x_20261122_050000_BUSY01_a.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(deeppcb[12].read_bytes())
    other = "busy0000000000000000000000000000"
    db_execute(
        database_url,
        "INSERT INTO agent_processes (process_id, hostname, pid) VALUES (%s, 'other', 1)",
        other,
    )
    db_execute(
        database_url,
        "INSERT INTO batches (batch_id, total_images, rejected_files)"
        " VALUES ('B_20261122_050000_BUSY01', 1, 0)",
    )
    db_execute(
        database_url,
        "INSERT INTO inspections (img_unique_id, batch_id, batch_position, original_filename,"
        " input_image_path, size_bytes, media_type, status, attempts, owner_process_id)"
        " VALUES ('20261122_050000_BUSY01', 'B_20261122_050000_BUSY01', 0, 'a.jpg', %s, 1,"
        " 'image/jpeg', 'processing', 1, %s)",
        image.relative_to(data).as_posix(),
        other,
    )
    settings = agent_settings(data, database_url, slow_service.url, stalled_job_after_s=2)
    with serve_agent(settings):
        for _ in range(40):  # 8 s (the worker polls every 5 s): the other process beats
            db_execute(
                database_url,
                "UPDATE agent_processes SET last_seen = now() WHERE process_id = %s",
                other,
            )
            time.sleep(0.2)
        assert slow_service.calls == 0
        assert db_rows(
            database_url,
            "SELECT status FROM inspections WHERE img_unique_id = '20261122_050000_BUSY01'",
        ) == [("processing",)]
        wait_until(  # the other process fell silent: its work is taken over
            lambda: (
                db_rows(
                    database_url,
                    "SELECT status FROM inspections WHERE img_unique_id = '20261122_050000_BUSY01'",
                )
                == [("succeeded",)]
            ),
            timeout_s=30,
        )
    assert slow_service.calls == 1


_DEAD = "dead1111111111111111111111111111"


def _interrupted_upload(database_url: str, img_unique_id: str, serial: str | None) -> None:
    """A single upload left `processing` by the process `_DEAD` (silent for an hour)."""
    db_execute(
        database_url,
        "INSERT INTO agent_processes (process_id, hostname, pid, last_seen)"
        " VALUES (%s, 'gone', 1, now() - interval '1 hour') ON CONFLICT DO NOTHING",
        _DEAD,
    )
    db_execute(
        database_url,
        "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
        " size_bytes, media_type, status, attempts, owner_process_id)"
        " VALUES (%s, 'a.png', %s, 100, 'image/png', 'processing', 1, %s)",
        img_unique_id,
        f"uploads/20261122/{img_unique_id}.png",
        _DEAD,
    )
    if serial is not None:
        db_execute(
            database_url,
            "INSERT INTO inspection_contexts (img_unique_id, board_serial, product)"
            " VALUES (%s, %s, 'PX-7')",
            img_unique_id,
            serial,
        )


def _reported(database_url: str, key: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (sink, name, payload)
        for sink, name, payload in db_rows(
            database_url,
            "SELECT sink, message_name, payload FROM outbox WHERE ordering_key = %s ORDER BY id",
            key,
        )
    ]


async def test_the_recovery_sweep_reports_a_failure_as_the_normal_path_does_once(
    tmp_path: Path, database_url: str
) -> None:
    """Uploads failed by the recovery sweep (their agent died) get the outbox rows of a
    failure in the normal path — CFX WorkStarted / UnitsInspected (Error) / WorkCompleted
    (Failed) and the `inspection.failed` webhook event — exactly once, however many sweeps
    run at once; and the rows and the status change commit together."""
    settings = agent_settings(
        tmp_path, database_url, "http://127.0.0.1:9", cfx_broker_url="amqp://127.0.0.1:1"
    )
    engine = create_engine(settings, database_url)
    pool = ModelServicePool(settings)
    sessions = create_session_factory(engine)
    services = [InspectionService(settings, open_storage(settings), pool, sessions) for _ in "ab"]
    try:
        # The normal path: a single upload whose input is missing fails in `process`.
        db_execute(
            database_url,
            "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
            " size_bytes, media_type, status, attempts)"
            " VALUES ('20261122_060000_NORMAL', 'n.png', 'uploads/gone.png', 100, 'image/png',"
            " 'pending', 0)",
        )
        with pytest.raises(StoredFileMissing):
            await services[0].process("20261122_060000_NORMAL")
        normal = _reported(database_url, "20261122_060000_NORMAL")

        _interrupted_upload(database_url, "20261122_060000_SWEEP1", "SN-SWEEP-1")
        _interrupted_upload(database_url, "20261122_060000_SWEEP2", None)
        results = await asyncio.gather(*(s.recover() for s in services), services[0].recover())
        assert sum(failed for _, failed in results) == 2
        assert (await services[1].recover())[1] == 0

        for key, img_unique_id, serial in (
            ("SN-SWEEP-1", "20261122_060000_SWEEP1", "SN-SWEEP-1"),
            ("20261122_060000_SWEEP2", "20261122_060000_SWEEP2", None),
        ):
            rows = _reported(database_url, key)
            assert (
                [(sink, name) for sink, name, _ in rows]
                == [(sink, name) for sink, name, _ in normal]
                == [
                    ("cfx", "CFX.Production.WorkStarted"),
                    ("cfx", "CFX.Production.TestAndInspection.UnitsInspected"),
                    ("cfx", "CFX.Production.WorkCompleted"),
                    ("webhooks", "inspection.failed"),
                ]
            )
            started, inspected, completed = (check_envelope(p) for _, _, p in rows[:3])
            assert started["PrimaryIdentifier"] == key
            unit = inspected["InspectedUnits"][0]
            assert unit["UnitIdentifier"] == key
            assert unit["OverallResult"] == "Error"
            assert unit["Inspections"][0]["UniqueIdentifier"] == img_unique_id
            assert unit["Inspections"][0]["Error"] == INTERRUPTED_ERROR
            assert completed["Result"] == "Failed"
            event = rows[3][2]
            assert event["type"] == "inspection.failed"
            assert event["data"] == {
                "img_unique_id": img_unique_id,
                "board_serial": serial,
                "batch_id": None,
                "error": INTERRUPTED_ERROR,
            }
        assert (
            db_rows(
                database_url,
                "SELECT status, last_error FROM inspections WHERE img_unique_id LIKE '%%SWEEP_'",
            )
            == [("failed", INTERRUPTED_ERROR)] * 2
        )

        # One transaction: when writing the event fails, the row stays `processing`.
        _interrupted_upload(database_url, "20261122_060000_SWEEP3", None)

        async def refused(*args: object) -> None:
            raise RuntimeError("the outbox refused the event")

        services[0].webhooks.inspection_failed = refused  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="outbox refused"):
            await services[0].recover()
        assert db_rows(
            database_url,
            "SELECT status FROM inspections WHERE img_unique_id = '20261122_060000_SWEEP3'",
        ) == [("processing",)]
        assert _reported(database_url, "20261122_060000_SWEEP3") == []
    finally:
        await pool.aclose()
        await engine.dispose()
