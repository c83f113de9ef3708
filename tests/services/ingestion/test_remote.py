"""The hot-folder loop over HTTP: an unreachable agent leaves files in place until it answers."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx2

from app.services.ingestion.remote import HttpSubmitter
from app.services.ingestion.watcher import FolderEvent, HotFolder, WatchOptions
from tests.support import AgentServer, db_rows

OPTIONS = WatchOptions(settle_s=0.2, batch_window_s=0.2, tick_s=0.1, retry_s=0.3)


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_files_wait_while_the_agent_is_unreachable_and_go_once_it_answers(
    tmp_path: Path, agent: AgentServer, deeppcb: list[Path]
) -> None:
    for board in deeppcb[80:82]:
        shutil.copy(board, tmp_path / board.name)
    events: list[FolderEvent] = []

    async with httpx2.AsyncClient(base_url="http://127.0.0.1:9", timeout=2) as nowhere:
        folder = HotFolder(tmp_path, HttpSubmitter(nowhere), OPTIONS, report=events.append)
        stop = asyncio.Event()
        task = asyncio.create_task(folder.run(stop))
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert any("waiting to send 2 file(s)" in event.text() for event in events)
    assert names_in(tmp_path) == sorted(b.name for b in deeppcb[80:82])

    async with httpx2.AsyncClient(base_url=agent.url, timeout=60) as client:
        folder = HotFolder(tmp_path, HttpSubmitter(client), OPTIONS, report=events.append)
        await asyncio.wait_for(folder.run(asyncio.Event(), once=True), 60)
    assert names_in(tmp_path) == ["processed"]
    names = [b.name for b in deeppcb[80:82]]
    assert db_rows(
        agent.settings.database_url or "",
        "SELECT count(*) FROM inspections WHERE original_filename = ANY(%s)"
        " AND status = 'succeeded'",
        names,
    ) == [(2,)]
