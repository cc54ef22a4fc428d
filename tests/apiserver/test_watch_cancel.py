"""A watch stream stops when its handler is cancelled as an event arrives.

Python 3.11's ``asyncio.wait_for`` returns the inner result and drops a cancel that arrives in the
same loop iteration as the inner completion: the stream then went on after its handler's cancel (a
server shutdown waits for it). The technique of tests/epp/test_stop.py: complete the awaited thing
and cancel in the same iteration.
"""
from __future__ import annotations

import asyncio
from typing import Any

from infergate.apiserver.handlers.watch import Watcher, WatchOptions
from infergate.apiserver.store import WatchEvent
from infergate.apiserver.watch import Subscription


async def test_a_watch_stream_cancelled_as_an_event_arrives_stops() -> None:
    watcher = Watcher(None, None)  # type: ignore[arg-type]  # neither is used by a stream sending nothing
    sub = Subscription("", "pods", None)
    options = WatchOptions(selected=lambda obj: True, send_initial=False, bookmarks=False, resource_version="",
                           timeout=None)
    task: asyncio.Task[Any] = asyncio.ensure_future(
        watcher._live(None, sub, None, options, last_rv=5))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    old = WatchEvent("ADDED", "", "pods", "default", 1, {})  # already sent: the stream skips it
    sub.queue.put_nowait(old)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:  # the cancel was dropped: stop it for good
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)
    assert done and task.cancelled()  # before: the stream went on waiting for events
