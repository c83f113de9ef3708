"""WATCH_NAME_PATTERN: a live agent's hot folder reads the board context from each file's
name; a name whose context is out of bounds is moved to failed/ with a note, not inspected."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import AgentServer, db_rows, serve_agent, wait_until

PATTERN = r"^(?P<board_serial>SN[0-9]+)_(?P<side>[a-z]+)_(?P<line>L[0-9])"


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, reference_service: ReferenceService
) -> Iterator[tuple[AgentServer, Path]]:
    folder = tmp_path_factory.mktemp("hot")
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        watch_dirs=[folder],
        watch_settle_s=0.6,
        watch_batch_window_s=0.5,
        watch_name_pattern=re.compile(PATTERN),
    )
    with serve_agent(settings) as agent:
        yield agent, folder


def test_context_comes_from_the_file_name(
    watched: tuple[AgentServer, Path], deeppcb: list[Path]
) -> None:
    agent, folder = watched
    db = agent.settings.database_url or ""
    (folder / "SN777_top_L3_cam1.jpg").write_bytes(deeppcb[110].read_bytes())
    (folder / "no-context-here.jpg").write_bytes(deeppcb[111].read_bytes())
    (folder / "SN888_left_L3_cam1.jpg").write_bytes(deeppcb[112].read_bytes())

    def done() -> bool:
        return not any(p.is_file() for p in folder.glob("*.jpg"))

    wait_until(done, timeout_s=60)
    rows = db_rows(
        db,
        "SELECT i.original_filename, c.board_serial, c.side, c.line FROM inspections i"
        " LEFT JOIN inspection_contexts c USING (img_unique_id)",
    )
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["SN777_top_L3_cam1.jpg"] == ("SN777", "top", "L3")
    assert by_name["no-context-here.jpg"] == (None, None, None)
    assert "SN888_left_L3_cam1.jpg" not in by_name  # not inspected
    note = folder / "failed" / "SN888_left_L3_cam1.jpg.error.txt"
    assert note.is_file()
    text = note.read_text(encoding="utf-8")
    assert "WATCH_NAME_PATTERN" in text
    assert "side" in text
    assert (folder / "failed" / "SN888_left_L3_cam1.jpg").is_file()  # the image is kept
