"""WATCH_NAME_PATTERN: a live agent's hot folder reads the board context from each file's
name; a name whose context is out of bounds is moved to failed/ with a note, not inspected."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.model_service.reference import ReferenceService
from tests.services.ingestion.conftest import watching_agent
from tests.support import AgentServer, db_rows, wait_until

PATTERN = r"^(?P<board_serial>SN[0-9]+)_(?P<side>[a-z]+)_(?P<line>L[0-9])"


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, reference_service: ReferenceService
) -> Iterator[tuple[AgentServer, Path]]:
    with watching_agent(
        tmp_path_factory,
        database_url,
        reference_service,
        watch_batch_window_s=0.5,
        watch_name_pattern=re.compile(PATTERN),
    ) as watched:
        yield watched


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


def test_sidecar_gives_context_moves_along_and_is_never_inspected(
    watched: tuple[AgentServer, Path], deeppcb: list[Path]
) -> None:
    """A sidecar's fields override the name's; the sidecar moves with its image; a bad
    sidecar sends its image to failed/ with a note naming it."""
    agent, folder = watched
    db = agent.settings.database_url or ""
    sub = folder / "side"
    sub.mkdir()
    (sub / "SN901_top_L1_a.jpg.json").write_text('{"product": "CTRL-S", "line": "L9"}')
    (sub / "SN901_top_L1_a.jpg").write_bytes(deeppcb[113].read_bytes())
    (sub / "plain.json").write_text('{"board_serial": "SN902", "lot": "WO-5"}')
    (sub / "plain.jpg").write_bytes(deeppcb[114].read_bytes())
    (sub / "broken.json").write_text('{"board_serial": "SN\\u0000"}')
    (sub / "broken.jpg").write_bytes(deeppcb[115].read_bytes())
    (sub / "bomb.json").write_text("[" * 5000)
    (sub / "bomb.jpg").write_bytes(deeppcb[116].read_bytes())

    wait_until(lambda: not any(sub.glob("*.jpg")), timeout_s=60)
    rows = db_rows(
        db,
        "SELECT i.original_filename, c.board_serial, c.product, c.line, c.lot"
        " FROM inspections i LEFT JOIN inspection_contexts c USING (img_unique_id)"
        " WHERE i.original_filename LIKE 'side/%%'",
    )
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["side/SN901_top_L1_a.jpg"] == ("SN901", "CTRL-S", "L9", None)
    assert by_name["side/plain.jpg"] == ("SN902", None, None, "WO-5")
    assert set(by_name) == {"side/SN901_top_L1_a.jpg", "side/plain.jpg"}  # no JSON inspected
    assert list(sub.iterdir()) == []  # sidecars moved along
    moved = {p.name for p in (folder / "processed").rglob("*.json")}
    assert {"SN901_top_L1_a.jpg.json", "plain.jpg.json"} <= moved
    for name in ("broken", "bomb"):
        note = (folder / "failed" / "side" / f"{name}.jpg.error.txt").read_text(encoding="utf-8")
        assert f"sidecar {name}.json" in note
        assert (folder / "failed" / "side" / f"{name}.jpg.json").is_file()
