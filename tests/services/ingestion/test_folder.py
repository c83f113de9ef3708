"""The file side of a hot folder: candidates, completeness, moves that never overwrite."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from app.services.ingestion.folder import (
    SettleTracker,
    is_candidate,
    link_on_the_way,
    move_to_failed,
    move_to_processed,
    scan,
)
from app.services.ingestion.watcher import FolderEvent, Handed, HotFolder, Settled, WatchOptions


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


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need a privilege on Windows")
def test_scan_never_follows_a_link_and_names_each_one(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "boards").mkdir(parents=True)
    (outside / "secret_key").write_text("secret")
    (outside / "boards" / "c.jpg").write_bytes(b"x")
    root = tmp_path / "hot"
    (root / "lot1").mkdir(parents=True)
    (root / "lot1" / "real.jpg").write_bytes(b"x")
    (root / "key.jpg").symlink_to(outside / "secret_key")
    (root / "inside.jpg").symlink_to(root / "lot1" / "real.jpg")  # even within the folder
    (root / "more").symlink_to(outside / "boards", target_is_directory=True)
    (root / "dangling.jpg").symlink_to(outside / "gone.jpg")
    links: list[Path] = []

    found = list(scan(root, on_link=links.append))

    assert found == [root / "lot1" / "real.jpg"]
    assert sorted(p.relative_to(root).as_posix() for p in links) == [
        "dangling.jpg",
        "inside.jpg",
        "key.jpg",
        "more",
    ]
    # An event naming a file behind a linked folder: the link is what counts.
    assert link_on_the_way(root, root / "more" / "c.jpg") == root / "more"
    assert link_on_the_way(root, root / "lot1" / "real.jpg") is None
    assert list(scan(root, root / "more", on_link=links.append)) == []
    assert links[-1] == root / "more"


class NothingHandedOver:
    """A submitter for folders that must hand nothing over (every file is left in place)."""

    async def submit(self, root: Path, files: Sequence[Path]) -> list[Handed]:
        raise AssertionError(f"nothing should be handed over, got {files}")

    async def settled(self, img_unique_ids: Sequence[str]) -> dict[str, Settled]:
        raise AssertionError("nothing is in flight")


def make_unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the right to read `path` away: `chmod 000` where permissions apply. As root
    (or on Windows) they do not, so there `Path.open` is patched to raise the
    PermissionError the system would (this file only): a mock, for lack of a real part
    that can refuse root."""
    if sys.platform != "win32" and os.geteuid() != 0:
        path.chmod(0)
        return
    real_open = Path.open

    def refusing(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing)


async def run_steps(folder: HotFolder, seconds: float) -> None:
    """Turn the loop for `seconds` (every turn lists the whole folder again)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await folder.step(set())
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("note_writable", [True, False])
async def test_an_unreadable_file_is_noted_and_logged_once_and_the_folder_goes_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    note_writable: bool,
) -> None:
    locked = tmp_path / "locked.png"
    locked.write_bytes(b"SECRET-BYTES")
    make_unreadable(locked, monkeypatch)
    if not note_writable:
        (tmp_path / "failed").write_text("a file where the failed/ folder should be")
    events: list[FolderEvent] = []
    folder = HotFolder(
        tmp_path,
        NothingHandedOver(),
        WatchOptions(settle_s=0.1, tick_s=0.05, rescan_s=0),
        report=events.append,
    )
    caplog.set_level(logging.INFO, logger="app.services.ingestion.watcher")

    await run_steps(folder, 1.5)  # many turns, each finding the file again

    (event,) = events
    assert (event.kind, event.file) == ("skipped", "locked.png")
    assert event.reason is not None
    assert event.reason.startswith("cannot be read (Permission denied)")
    (record,) = [r for r in caplog.records if r.getMessage().startswith("hot folder file left")]
    assert getattr(record, "file", None) == "locked.png"
    assert locked.exists()  # left in place
    if note_writable:
        note = (tmp_path / "failed" / "locked.png.error.txt").read_text()
        assert "file: locked.png\n" in note
        assert "cannot be read (Permission denied)" in note
        assert "SECRET" not in note
    else:
        assert record.getMessage() == "hot folder file left in place; no note could be written"


class Recording:
    """A submitter that takes every file handed over and records them (each inspection
    settles at once)."""

    def __init__(self) -> None:
        self.handed: list[list[str]] = []
        self.any_handed = asyncio.Event()

    async def submit(self, root: Path, files: Sequence[Path]) -> list[Handed]:
        self.handed.append([p.name for p in files])
        self.any_handed.set()
        return [Handed(p, settled=Settled(True)) for p in files]

    async def settled(self, img_unique_ids: Sequence[str]) -> dict[str, Settled]:
        return {}


async def test_a_file_dropped_while_the_watch_starts_is_taken_without_waiting_for_a_rescan(
    tmp_path: Path,
) -> None:
    """A file written after the first listing and before the OS watch exists gives no
    event; the folder is listed again once the watch runs, not only `rescan_s` later."""

    class DropDuringStart(HotFolder):
        async def step(self, changes: Any) -> None:
            first = self.last_rescan == float("-inf")
            await super().step(changes)
            if first and not (tmp_path / "late.jpg").exists():
                (tmp_path / "late.jpg").write_bytes(b"dropped in the startup window")

    submitter = Recording()
    folder = DropDuringStart(
        tmp_path, submitter, WatchOptions(settle_s=0.1, tick_s=0.1, rescan_s=3600)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(folder.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(submitter.any_handed.wait(), 20)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert submitter.handed == [["late.jpg"]]
