"""A hot folder survives the agent being killed mid-ingestion: every good file is inspected
exactly once and moved, the bad one ends in failed/ with its reason."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from app.services.model_service.reference import ReferenceService, free_loopback_port
from tests.support import AgentProcess, db_rows, wait_until


def test_killed_agent_ingests_every_dropped_file_exactly_once_after_restart(
    tmp_path: Path, database_url: str, reference_service: ReferenceService, deeppcb: list[Path]
) -> None:
    folder = tmp_path / "aoi-out"
    folder.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SEGFORMER_SERVICE_URL": reference_service.url,
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_loopback_port()),
        "WATCH_DIRS": str(folder),
        "WATCH_SETTLE_S": "0.5",
        "WATCH_BATCH_WINDOW_S": "0.5",
        "STALLED_JOB_AFTER_S": "3",
        "SEGFORMER_MAX_CONCURRENCY": "1",
        "LOG_LEVEL": "WARNING",
    }
    agent = AgentProcess(env, tmp_path / "agent.log")
    boards = deeppcb[120:136]
    hashes = [hashlib.sha256(b.read_bytes()).hexdigest() for b in boards]

    def inspected() -> int:
        return int(
            db_rows(
                database_url,
                "SELECT count(*) FROM inspections WHERE input_sha256 = ANY(%s)"
                " AND status = 'succeeded'",
                hashes,
            )[0][0]
        )

    agent.start()
    try:
        for board in boards:
            shutil.copy(board, folder / board.name)
        (folder / "readme.txt").write_text("not an image")
        wait_until(lambda: inspected() >= 2, interval_s=0.05)
        agent.kill()
        assert inspected() < len(boards), "all done before the kill; the test proves nothing"
        assert any((folder / b.name).exists() for b in boards)

        agent.start()
        wait_until(
            lambda: not any(p.is_file() for p in folder.iterdir()) and inspected() == len(boards),
            timeout_s=180,
        )
    finally:
        agent.stop()

    # Exactly one inspection per file, found by content, each with its result rows.
    assert db_rows(
        database_url,
        "SELECT count(*), count(DISTINCT input_sha256) FROM inspections"
        " WHERE input_sha256 = ANY(%s)",
        hashes,
    ) == [(len(boards), len(boards))]
    assert db_rows(
        database_url,
        "SELECT count(*) FROM images JOIN inspections USING (img_unique_id)"
        " WHERE input_sha256 = ANY(%s)",
        hashes,
    ) == [(len(boards),)]
    # Every good file moved to processed/YYYYMMDD/, byte for byte; nothing lost or doubled.
    moved = sorted(p for p in (folder / "processed").rglob("*.jpg"))
    assert sorted(p.name for p in moved) == sorted(b.name for b in boards)
    assert all(p.parent.parent == folder / "processed" for p in moved)
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in moved} == set(hashes)
    # The bad one in failed/ with its reason.
    assert (folder / "failed" / "readme.txt").read_text() == "not an image"
    assert (
        "not a JPEG, PNG, TIFF or BMP" in (folder / "failed" / "readme.txt.error.txt").read_text()
    )
