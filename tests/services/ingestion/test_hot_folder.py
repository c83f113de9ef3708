"""WATCH_DIRS: files dropped into a watched folder of a live agent are inspected once and moved."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.services.model_service.reference import ReferenceService
from tests.services.ingestion.conftest import watching_agent
from tests.support import AgentServer, db_rows, make_image, wait_until


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def waiting(folder: Path) -> list[Path]:
    """Files still lying in the watched folder (not yet moved)."""
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] not in ("processed", "failed")
    ]


def processed(folder: Path) -> dict[str, Path]:
    return {
        p.name: p
        for p in (folder / "processed").rglob("*")
        if p.is_file() and not p.name.endswith(".txt")
    }


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, reference_service: ReferenceService
) -> Iterator[tuple[AgentServer, Path]]:
    """A live agent watching a temporary folder (short settle time and batch window)."""
    with watching_agent(
        tmp_path_factory, database_url, reference_service, watch_batch_window_s=1.0
    ) as watched:
        yield watched


def write_slowly(path: Path, data: bytes, seconds: float) -> None:
    """Write `data` in pieces over `seconds`, as a slow network copy would."""
    pieces = 8
    step = len(data) // pieces + 1
    with path.open("wb") as fh:
        for start in range(0, len(data), step):
            fh.write(data[start : start + step])
            fh.flush()
            time.sleep(seconds / pieces)


def test_dropped_files_are_inspected_once_as_one_batch_and_moved(
    watched: tuple[AgentServer, Path], deeppcb: list[Path]
) -> None:
    agent, folder = watched
    db = agent.settings.database_url or ""
    boards = deeppcb[100:106]
    slow_board = deeppcb[106]
    (folder / "lot42").mkdir()
    (folder / "copy-in-progress.jpg.part").write_bytes(boards[0].read_bytes())
    slow = threading.Thread(
        target=write_slowly, args=(folder / "slow.jpg", slow_board.read_bytes(), 3.0)
    )
    slow.start()
    for board in boards[:5]:
        shutil.copy(board, folder / board.name)
    shutil.copy(boards[5], folder / "lot42" / boards[5].name)
    (folder / "notes.txt").write_text("operator notes, not an image")
    (folder / "same-as-first.jpg").write_bytes(boards[0].read_bytes())
    slow.join()

    wait_until(lambda: not [p for p in waiting(folder) if p.suffix != ".part"], timeout_s=90)

    done = processed(folder)
    assert set(done) >= {b.name for b in boards} | {"slow.jpg", "same-as-first.jpg"}
    assert (folder / "processed").iterdir().__next__().name.isdigit()  # processed/YYYYMMDD
    assert done[boards[5].name].parent.name == "lot42"  # sub-folders are kept
    assert done["slow.jpg"].read_bytes() == slow_board.read_bytes()
    # The file still being copied under a temporary name is left alone.
    assert (folder / "copy-in-progress.jpg.part").exists()

    # The non-image is in failed/ with the reason beside it.
    assert (folder / "failed" / "notes.txt").read_text() == "operator notes, not an image"
    reason = (folder / "failed" / "notes.txt.error.txt").read_text()
    assert "not a JPEG, PNG, TIFF or BMP image" in reason

    # Exactly one inspection per distinct content, each succeeded; the duplicate was skipped
    # with a note naming the inspection it repeats.
    hashes = [sha256(b.read_bytes()) for b in [*boards, slow_board]]
    rows = db_rows(
        db,
        "SELECT input_sha256, count(*), min(status::text), min(img_unique_id), min(batch_id)"
        " FROM inspections WHERE input_sha256 = ANY(%s) GROUP BY input_sha256",
        hashes,
    )
    assert len(rows) == 7
    assert all(count == 1 and status == "succeeded" for _, count, status, _, _ in rows)
    by_hash = {h: (img_id, batch) for h, _, _, img_id, batch in rows}
    first_id = by_hash[hashes[0]][0]
    # The two copies became complete together: either may be the one inspected, the other
    # carries the note.
    notes = [
        done[name].parent / f"{name}.duplicate.txt"
        for name in ("same-as-first.jpg", boards[0].name)
    ]
    (note,) = [path.read_text() for path in notes if path.exists()]
    assert first_id in note
    # Files that appeared together went in as one batch, through the normal batch path.
    batches = {by_hash[h][1] for h in hashes[:6]}
    assert len(batches) == 1
    assert None not in batches
    # The slow file was taken only once complete: its kept input is the whole file.
    slow_id = by_hash[sha256(slow_board.read_bytes())][0]
    (input_path,) = db_rows(
        db, "SELECT input_image_path FROM images WHERE img_unique_id = %s", slow_id
    )[0]
    assert (agent.settings.resolved_data_dir / input_path).read_bytes() == slow_board.read_bytes()
    names = dict(
        db_rows(
            db,
            "SELECT img_unique_id, original_filename FROM inspections WHERE batch_id = ANY(%s)",
            list(batches),
        )
    )
    assert f"lot42/{boards[5].name}" in names.values()


def test_bytes_already_inspected_are_not_inspected_again(
    watched: tuple[AgentServer, Path], deeppcb: list[Path]
) -> None:
    agent, folder = watched
    db = agent.settings.database_url or ""
    data = deeppcb[110].read_bytes()
    with httpx2.Client(base_url=agent.url, timeout=60) as client:
        uploaded = client.post("/api/upload", files={"image": ("line3.jpg", data)}).json()
    (folder / "line3-again.jpg").write_bytes(data)
    (folder / "fresh.png").write_bytes(make_image(size=(90, 60)))

    wait_until(lambda: "line3-again.jpg" in processed(folder) and "fresh.png" in processed(folder))

    assert db_rows(
        db, "SELECT count(*) FROM inspections WHERE input_sha256 = %s", sha256(data)
    ) == [(1,)]
    note = processed(folder)["line3-again.jpg"].with_name("line3-again.jpg.duplicate.txt")
    assert uploaded["img_unique_id"] in note.read_text()
    assert "not inspected again" in note.read_text()
