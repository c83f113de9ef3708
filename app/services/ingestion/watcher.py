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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
from watchfiles import Change, awatch

from app.services.ingestion.folder import (
    SettleTracker,
    is_candidate,
    move_to_failed,
    move_to_processed,
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
        report: Callable[[str], None] | None = None,
    ) -> None:
        """`report`, if given, gets one line of text per file moved (for a console)."""
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
            await self.step(changes)
            if once and self.idle:
                return

    async def step(self, changes: set[tuple[Change, str]]) -> None:
        """One turn of the loop: follow new files, gather complete ones, hand a batch over,
        and move the files whose inspections ended."""
        now = time.monotonic()
        for change, name in changes:
            path = Path(name)
            if change == Change.deleted:
                self.tracker.forget(path)
            elif path not in self.busy and path not in self.ready:
                await anyio.to_thread.run_sync(self._follow, path, now)
        if now - self.last_rescan >= self.options.rescan_s:
            self.last_rescan = now
            for path in await anyio.to_thread.run_sync(lambda: list(scan(self.root))):
                if path not in self.busy and path not in self.ready:
                    self.tracker.observe(path, now)
        complete = await anyio.to_thread.run_sync(self.tracker.complete, now)
        if complete and not self.ready:
            self.ready_since = now
        self.ready.extend(complete)
        await self._hand_over(now)
        if self.in_flight and now - self.last_poll >= max(self.options.tick_s, 1.0):
            self.last_poll = now
            await self._finish_settled()

    def _follow(self, path: Path, now: float) -> None:
        """Follow a file an event named; for a new folder, every file already in it (they
        may have been written before the folder itself was being watched). Blocking."""
        if path.is_dir():
            for inner in scan(self.root, path):
                if inner not in self.busy and inner not in self.ready:
                    self.tracker.observe(inner, now)
        else:
            self.tracker.observe(path, now)

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
                self.report(f"waiting to send {len(files)} file(s): {exc}")
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
                self.report(f"batch {batch_id}: {queued} file(s) queued (/batch?batch={batch_id})")
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
            how = "already inspected as" if item.note else "inspected as"
            self.report(
                f"processed {relative_name(self.root, item.source)}: {how} {item.img_unique_id}"
                f" -> {relative_name(self.root, target)}"
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
            self.report(f"failed {relative_name(self.root, source)}: {reason}")

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await stop.wait()
