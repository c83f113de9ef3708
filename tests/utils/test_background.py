"""The background task set the after-store hooks share (shadow deferrals, golden
registrations): tasks kept until they end, and waited for by `drain`."""

from __future__ import annotations

import asyncio

from app.utils.background import BackgroundTaskSet


async def test_drain_waits_for_every_task_and_forgets_ended_ones() -> None:
    tasks = BackgroundTaskSet()
    done: list[str] = []
    gate = asyncio.Event()

    async def work(name: str) -> None:
        await gate.wait()
        done.append(name)

    tasks.start(work("a"), name="t-a")
    tasks.start(work("b"), name="t-b")
    assert len(tasks) == 2
    asyncio.get_running_loop().call_later(0.05, gate.set)
    await tasks.drain()
    assert sorted(done) == ["a", "b"]
    assert len(tasks) == 0


async def test_drain_swallows_a_failure_and_waits_for_tasks_started_meanwhile() -> None:
    tasks = BackgroundTaskSet()
    done: list[str] = []

    async def later() -> None:
        await asyncio.sleep(0.05)
        done.append("later")

    async def fails_then_starts_another() -> None:
        tasks.start(later(), name="later")
        raise RuntimeError("logged by the coroutine's owner, not raised by drain")

    task = tasks.start(fails_then_starts_another(), name="fails")
    assert task.get_name() == "fails"
    await tasks.drain()
    assert done == ["later"]
    assert len(tasks) == 0
