"""Fire-and-forget coroutines an object starts off a request's path and waits for at
shutdown (the after-store hooks: shadow deferrals, golden registrations)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class BackgroundTaskSet:
    """Tasks started with `start`, each kept (a strong reference: the event loop holds
    only weak ones, so an unreferenced task may be garbage-collected mid-run; Python docs,
    `asyncio.create_task`) until it ends, and waited for together by `drain`.

    The coroutines handle their own errors: `drain` swallows what one raises.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Tasks not ended yet."""
        return len(self._tasks)

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run `coro` in a task named `name` on the running loop; returns the task."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for every task still running (including any started while waiting)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
