"""util.tasks.cancel_and_wait: every task cancelled and unwound before it returns."""

from __future__ import annotations

import asyncio


async def test_every_task_is_cancelled_and_has_unwound() -> None:
    from infergate.util.tasks import cancel_and_wait

    unwound: list[int] = []

    async def worker(i: int) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # unwinding takes a step of its own
            unwound.append(i)

    tasks = [asyncio.create_task(worker(i)) for i in range(3)]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks)
    assert sorted(unwound) == [0, 1, 2] and all(t.cancelled() for t in tasks)
    await cancel_and_wait([])  # nothing to do
