"""The file side of a hot folder: candidates, completeness, moves that never overwrite."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from app.services.ingestion.folder import (
    SettleTracker,
    is_candidate,
    move_to_failed,
    move_to_processed,
    scan,
)


def test_candidates_skip_result_folders_hidden_and_partial_files(tmp_path: Path) -> None:
    for name in [
        "a.jpg",
        "lot7/b.png",
        "processed/20261122/c.jpg",
        "failed/d.jpg",
        ".hidden.jpg",
        ".sync/e.jpg",
        "f.jpg.part",
        "g.tmp",
        "~$h.jpg",
        "notes.txt",
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in scan(tmp_path)]
    assert found == ["a.jpg", "notes.txt", "lot7/b.png"]
    assert not is_candidate(tmp_path, tmp_path.parent / "elsewhere.jpg")


def test_a_file_is_complete_only_after_it_stopped_changing_for_the_settle_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "slow.jpg"
    path.write_bytes(b"12345")
    tracker = SettleTracker(settle_s=2.0)
    tracker.observe(path, now=100.0)
    assert tracker.complete(now=101.0) == []
    with path.open("ab") as fh:  # the writer is still going
        fh.write(b"678")
    assert tracker.complete(now=102.5) == []  # changed: the clock starts again
    assert tracker.complete(now=103.0) == []
    assert tracker.complete(now=104.6) == [path]
    assert tracker.files == {}


def test_an_empty_file_waits_longer_and_a_vanished_one_is_dropped(tmp_path: Path) -> None:
    empty, gone = tmp_path / "empty.png", tmp_path / "gone.png"
    empty.write_bytes(b"")
    gone.write_bytes(b"x")
    tracker = SettleTracker(settle_s=1.0)
    tracker.observe(empty, now=0.0)
    tracker.observe(gone, now=0.0)
    gone.unlink()
    assert tracker.complete(now=2.0) == []
    assert list(tracker.files) == [empty]
    assert tracker.complete(now=5.0) == [empty]


def test_moves_keep_sub_folders_never_overwrite_and_explain_failures(tmp_path: Path) -> None:
    (tmp_path / "lot1").mkdir()
    first = tmp_path / "lot1" / "board.jpg"
    first.write_bytes(b"one")
    when = datetime(2026, 11, 22, 9, 30)
    moved = move_to_processed(tmp_path, first, when=when)
    assert moved == tmp_path / "processed" / "20261122" / "lot1" / "board.jpg"
    first.write_bytes(b"two")  # the same name dropped again
    again = move_to_processed(tmp_path, first, note="already inspected", when=when)
    assert again.name == "board_1.jpg"
    assert moved.read_bytes() == b"one"
    assert again.read_bytes() == b"two"
    assert (again.parent / "board_1.jpg.duplicate.txt").read_text() == "already inspected"

    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    failed = move_to_failed(tmp_path, bad, "not an image")
    assert failed == tmp_path / "failed" / "notes.txt"
    error = (tmp_path / "failed" / "notes.txt.error.txt").read_text()
    assert "file: notes.txt" in error
    assert "reason: not an image" in error
    bad.write_text("again")
    assert move_to_failed(tmp_path, bad, "still not").name == "notes_1.txt"
    assert failed.read_text() == "hello"
