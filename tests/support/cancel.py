"""Cancel a task in the same loop iteration as the thing it awaits completes.

Python 3.11's ``asyncio.wait_for`` returns the inner result and drops a cancel that arrives in the
same iteration as the inner completion; a loop around it then outlives its task's cancel. Tests of
that (tests/epp/test_stop.py, tests/runtime/test_loop_cancel.py) use ``cancel_as_it_completes``.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def cancel_as_it_completes(task: asyncio.Task[Any], complete: Callable[[], Any]) -> bool:
    """Complete the awaited thing and cancel ``task`` in the same iteration; True if ``task`` ended cancelled."""
    complete()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:
        task.cancel()  # the first cancel was dropped: stop it for good
        await asyncio.wait({task}, timeout=2.0)
        return False
    return task.cancelled()
