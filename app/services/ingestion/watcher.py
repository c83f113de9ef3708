"""The hot-folder loop: notice dropped files, wait until complete, hand them over in
batches, and move each one once its inspection is settled.

The same loop serves the agent itself (`WATCH_DIRS`, files handed straight to the
inspection workflow) and `aoi-agent watch` on another machine (files sent over the
HTTP API); a `Submitter` is the difference.

Restart safety comes from two rules: a source file stays where it was until its
inspection is settled (so a crash leaves it to be found again), and the agent
skips bytes it has already inspected or is inspecting (by SHA-256), so finding it
again never inspects it twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
from watchfiles import Change, awatch

from app.services.ingestion.folder import (
    LINK_REASON,
    SettleTracker,
    is_candidate,
    link_on_the_way,
    move_to_failed,
    move_to_processed,
    note_left_in_place,
    relative_name,
    scan,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settled:
    """How an inspection ended for good: succeeded, or failed with the reason."""

    succeeded: bool
    error: str | None = None


@dataclass(frozen=True)
class Handed:
    """What the agent made of one handed-over file.

    Attributes:
        source: the file in the watched folder.
        img_unique_id: the inspection whose end decides where the file goes (a new one, or
            the earlier inspection of the same bytes); None when rejected.
        rejection: why the file was not accepted (not an image, too large, ...).
        note: written beside the file in processed/ (why it was not inspected again).
        settled: already known end (e.g. a duplicate of a finished inspection).
        batch_id: the batch a new inspection of the file belongs to.
    """

    source: Path
    img_unique_id: str | None = None
    rejection: str | None = None
    note: str | None = None
    settled: Settled | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class FolderEvent:
    """One thing the hot folder did, for a console (`HotFolder(report=...)`).

    Attributes:
        kind: `queued` (a batch handed over), `processed` (a file moved to processed/),
            `failed` (moved to failed/ with its note), `skipped` (left where it is: a link,
            an unreadable file; reported once), `waiting` (the agent cannot take files now).
        file: the file, relative to the watched folder, `/`-separated.
        reason: why it failed, was skipped, or why sending waits.
        batch_id: the batch (queued).
        files: how many files (queued, waiting).
        img_unique_id: the inspection that settled the file (processed).
        moved_to: where the file now is, relative to the watched folder (processed).
        duplicate: processed without a new inspection (the same bytes were inspected).
    """

    kind: Literal["queued", "processed", "failed", "skipped", "waiting"]
    file: str | None = None
    reason: str | None = None
    batch_id: str | None = None
    files: int | None = None
    img_unique_id: str | None = None
    moved_to: str | None = None
    duplicate: bool | None = None

    def text(self) -> str:
        """The event as one line of text."""
        if self.kind == "queued":
            return (
                f"batch {self.batch_id}: {self.files} file(s) queued (/batch?batch={self.batch_id})"
            )
        if self.kind == "processed":
            how = "already inspected as" if self.duplicate else "inspected as"
            return f"processed {self.file}: {how} {self.img_unique_id} -> {self.moved_to}"
        if self.kind == "waiting":
            return f"waiting to send {self.files} file(s): {self.reason}"
        return f"{self.kind} {self.file}: {self.reason}"

    def as_json(self) -> dict[str, Any]:
        """The event as a JSON object: `event` (the kind) and the fields that are set."""
        fields = {k: v for k, v in asdict(self).items() if v is not None and k != "kind"}
        return {"event": self.kind, **fields}


class SubmitLater(Exception):
    """The agent cannot take files now (unreachable, busy); they stay and are tried again."""


class Submitter(Protocol):
    """Hands files to the agent and reports how their inspections ended."""

    async def submit(self, root: Path, files: Sequence[Path]) -> list[Handed]:
        """Hand `files` (under `root`) over as one batch; one `Handed` per file handed
        (a file that vanished meanwhile may be left out).

        Raises:
            SubmitLater: nothing was handed over; try again later.
        """
        ...

    async def settled(self, img_unique_ids: Sequence[str]) -> dict[str, Settled]:
        """The inspections among `img_unique_ids` that have ended for good."""
        ...


@dataclass(frozen=True)
class WatchOptions:
    """How a folder is watched; times in seconds.

    Attributes:
        settle_s: a file is complete once its size and mtime are unchanged this long.
        batch_window_s: files complete within this long of the first form one batch.
        max_batch: most files per batch (MAX_BATCH_SIZE).
        polling: poll the folder instead of OS events (network shares deliver none).
        tick_s: how often the loop wakes up.
        rescan_s: how often the whole folder is listed again (events can be missed).
        retry_s: wait before handing over again after `SubmitLater`.
    """

    settle_s: float = 2.0
    batch_window_s: float = 2.0
    max_batch: int = 100
    polling: bool = False
    tick_s: float = 0.5
    rescan_s: float = 30.0
    retry_s: float = 5.0


class HotFolder:
    """One watched folder: its followed files, the batch being gathered, the files in flight."""

    def __init__(
        self,
        root: Path,
        submitter: Submitter,
        options: WatchOptions,
        report: Callable[[FolderEvent], None] | None = None,
    ) -> None:
        """`report`, if given, gets one `FolderEvent` per batch handed over, file moved
        and file left in place (for a console)."""
        self.root = root
        self.submitter = submitter
        self.options = options
        self.report = report
        self.tracker = SettleTracker(options.settle_s)
        self.ready: list[Path] = []
        self.ready_since: float | None = None
        self.in_flight: dict[str, list[Handed]] = {}
        self.busy: set[Path] = set()  # handed over and not yet moved
        self.next_submit = 0.0
        self.last_rescan = float("-inf")
        self.last_poll = float("-inf")
        self.left: dict[Path, str] = {}  # left in place (links, unreadable), reported once

    @property
    def idle(self) -> bool:
        """Nothing followed, gathered or in flight."""
        return not (self.tracker.files or self.ready or self.in_flight)

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> None:
        """Watch until `stop` is set (or, with `once`, until what was in the folder at the
        start is done). Survives the folder vanishing (a share going away) and coming back.
        """
        while not stop.is_set():
            if not await anyio.to_thread.run_sync(self.root.is_dir):
                logger.warning("watched folder is missing", extra={"folder": str(self.root)})
                await self._sleep(stop, self.options.retry_s)
                continue
            try:
                await self._watch(stop, once)
                return
            except Exception:  # the folder lost, a share gone, a bug: keep the agent watching
                logger.exception("watching failed; again shortly", extra={"folder": str(self.root)})
                await self._sleep(stop, self.options.retry_s)

    async def _watch(self, stop: asyncio.Event, once: bool) -> None:
        tick_ms = int(self.options.tick_s * 1000)
        watching_since_s: float | None = None
        await self.step(set())
        if once and self.idle:
            return
        async for changes in awatch(
            self.root,
            watch_filter=lambda _, path: is_candidate(self.root, Path(path)),
            debounce=tick_ms,
            step=min(50, tick_ms),
            stop_event=stop,
            rust_timeout=tick_ms,
            yield_on_timeout=True,
            force_polling=self.options.polling,
            poll_delay_ms=max(100, tick_ms),
        ):
            if watching_since_s is None:
                # The OS watch exists from here on, but files dropped between the listing
                # above and its start gave no event: list the folder once more now rather
                # than at the next periodic rescan (up to `rescan_s` later).
                watching_since_s = time.monotonic()
                self.last_rescan = float("-inf")
            await self.step(changes)
            if once and self.idle:
                return

    async def step(self, changes: set[tuple[Change, str]]) -> None:
        """One turn of the loop: follow new files, gather complete ones, hand a batch over,
        and move the files whose inspections ended."""
        now = time.monotonic()
        links: list[Path] = []
        for change, name in changes:
            path = Path(name)
            if change == Change.deleted:
                self.tracker.forget(path)
            elif path not in self.busy and path not in self.ready:
                await anyio.to_thread.run_sync(self._follow, path, now, links)
        if now - self.last_rescan >= self.options.rescan_s:
            self.last_rescan = now
            found = await anyio.to_thread.run_sync(self._rescan, links)
            for path in found:
                if path not in self.busy and path not in self.ready:
                    self.tracker.observe(path, now)
        complete = await anyio.to_thread.run_sync(self._complete, now, links)
        for link in links:
            await self._leave(link, LINK_REASON)
        for path, reason in self.tracker.take_unreadable().items():
            await self._leave(path, reason)
        if complete and not self.ready:
            self.ready_since = now
        self.ready.extend(complete)
        await self._hand_over(now)
        if self.in_flight and now - self.last_poll >= max(self.options.tick_s, 1.0):
            self.last_poll = now
            await self._finish_settled()

    def _follow(self, path: Path, now: float, links: list[Path]) -> None:
        """Follow a file an event named; for a new folder, every file already in it (they
        may have been written before the folder itself was being watched). Links found
        are added to `links`, never followed. Blocking."""
        link = link_on_the_way(self.root, path)
        if link is not None:
            if os.path.lexists(link):
                links.append(link)
        elif path.is_dir():
            for inner in scan(self.root, path, on_link=links.append):
                if inner not in self.busy and inner not in self.ready:
                    self.tracker.observe(inner, now)
        else:
            self.tracker.observe(path, now)

    def _rescan(self, links: list[Path]) -> list[Path]:
        """Every candidate file now; links found go to `links`. Files left in place that
        are gone are forgotten (reported again if they come back). Blocking."""
        self.left = {p: why for p, why in self.left.items() if os.path.lexists(p)}
        return list(scan(self.root, on_link=links.append))

    def _complete(self, now: float, links: list[Path]) -> list[Path]:
        """The followed files complete now; one turned into a link meanwhile goes to
        `links` instead. Blocking."""
        complete = []
        for path in self.tracker.complete(now):
            link = link_on_the_way(self.root, path)
            if link is None:
                complete.append(path)
                self.left.pop(path, None)
            elif os.path.lexists(link):
                links.append(link)
        return complete

    async def _leave(self, path: Path, reason: str) -> None:
        """Leave a file where it is (a link, an unreadable file): one log line, one note in
        failed/ and one event, the first time only."""
        if self.left.get(path) == reason:
            return
        self.left[path] = reason
        name = relative_name(self.root, path)
        try:
            note = await anyio.to_thread.run_sync(note_left_in_place, self.root, path, reason)
        except OSError as exc:
            logger.warning(
                "hot folder file left in place; no note could be written",
                extra={"file": name, "reason": reason, "error": str(exc)},
            )
        else:
            logger.warning(
                "hot folder file left in place",
                extra={
                    "file": name,
                    "reason": reason,
                    "note": relative_name(self.root, note) if note else None,
                },
            )
        if self.report is not None:
            self.report(FolderEvent("skipped", file=name, reason=reason))

    async def _hand_over(self, now: float) -> None:
        if not self.ready or now < self.next_submit:
            return
        window_over = self.ready_since is not None and (
            now - self.ready_since >= self.options.batch_window_s
        )
        if not window_over and len(self.ready) < self.options.max_batch:
            return
        files = self.ready[: self.options.max_batch]
        try:
            handed = await self.submitter.submit(self.root, files)
        except SubmitLater as exc:
            logger.warning(
                "could not hand files over; trying again",
                extra={"folder": str(self.root), "files": len(files), "error": str(exc)},
            )
            self.next_submit = now + self.options.retry_s
            if self.report is not None:
                self.report(FolderEvent("waiting", files=len(files), reason=str(exc)))
            return
        del self.ready[: len(files)]
        self.ready_since = now if self.ready else None
        batch_ids = sorted({h.batch_id for h in handed if h.batch_id})
        logger.info(
            "hot folder files handed over",
            extra={"folder": str(self.root), "files": len(files), "batch_ids": batch_ids},
        )
        if self.report is not None:
            for batch_id in batch_ids:
                queued = sum(h.batch_id == batch_id for h in handed)
                self.report(FolderEvent("queued", batch_id=batch_id, files=queued))
        for item in handed:
            if item.rejection is not None:
                await self._move_failed(item.source, item.rejection)
            elif item.settled is not None:
                await self._finish(item, item.settled)
            elif item.img_unique_id is not None:
                self.busy.add(item.source)
                self.in_flight.setdefault(item.img_unique_id, []).append(item)

    async def _finish_settled(self) -> None:
        try:
            ended = await self.submitter.settled(list(self.in_flight))
        except SubmitLater as exc:
            logger.warning("could not ask for inspection states", extra={"error": str(exc)})
            return
        for img_unique_id, settled in ended.items():
            for item in self.in_flight.pop(img_unique_id, []):
                await self._finish(item, settled)
                self.busy.discard(item.source)

    async def _finish(self, item: Handed, settled: Settled) -> None:
        if not settled.succeeded:
            reason = f"inspection {item.img_unique_id} failed: {settled.error or 'unknown error'}"
            await self._move_failed(item.source, reason)
            return
        try:
            target = await anyio.to_thread.run_sync(
                lambda: move_to_processed(self.root, item.source, item.note)
            )
        except OSError as exc:
            logger.error(
                "could not move an inspected file to processed/",
                extra={"file": str(item.source), "error": str(exc)},
            )
            return
        logger.info(
            "hot folder file inspected",
            extra={"file": relative_name(self.root, target), "img_unique_id": item.img_unique_id},
        )
        if self.report is not None:
            self.report(
                FolderEvent(
                    "processed",
                    file=relative_name(self.root, item.source),
                    img_unique_id=item.img_unique_id,
                    moved_to=relative_name(self.root, target),
                    duplicate=item.note is not None,
                )
            )

    async def _move_failed(self, source: Path, reason: str) -> None:
        try:
            await anyio.to_thread.run_sync(lambda: move_to_failed(self.root, source, reason))
        except OSError as exc:
            logger.error(
                "could not move a file to failed/", extra={"file": str(source), "error": str(exc)}
            )
            return
        logger.warning("hot folder file failed", extra={"file": str(source), "reason": reason})
        if self.report is not None:
            self.report(FolderEvent("failed", file=relative_name(self.root, source), reason=reason))

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await stop.wait()
