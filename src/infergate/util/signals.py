"""Stopping an asyncio program on its stop signals (SIGTERM, SIGINT), in bounded time.

``run_until_signal`` waits inside a running program for one of the signals. ``run_until_stopped``
runs a command's main coroutine the way ``asyncio.run`` does, with three differences that make
Ctrl-C and ``kill`` (SIGTERM) end it cleanly and in bounded time:

- SIGTERM does what SIGINT does (by default the process would die at once, skipping every
  ``finally``: the children it started would be left running): the main task is cancelled, so
  its ``finally`` blocks and ``except asyncio.CancelledError`` handlers stop what it started;
- that cleanup gets ``grace`` seconds (a second signal ends the wait at once); what has not
  finished by then is abandoned;
- blocking calls run through ``asyncio.to_thread`` / ``run_in_executor`` never delay the exit:
  the default executor's worker threads are daemon threads that nothing joins (``asyncio.run``
  joins them at shutdown, and ``concurrent.futures`` again at interpreter exit, so one stuck
  cluster or helm call could hold the process for as long as its own timeout).

The run ends with :class:`Stopped` when a signal ended it (``finished`` says whether the main
coroutine's cleanup completed within the grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_GRACE_S = 10.0  # how long a stopped command's cleanup may take
_TASKS_GRACE_S = 1.0  # what the main task left running, after it: cancelled, this long to finish


async def run_until_signal(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> signal.Signals:
    """Wait until one of ``signals`` (default SIGTERM, SIGINT) arrives and return it.

    The handlers are installed on the running loop for the wait only; graceful shutdown is the
    caller's (typically in a ``finally``).
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


class Stopped(Exception):
    """A stop signal ended :func:`run_until_stopped`'s coroutine (cancelled it)."""

    def __init__(self, sig: signal.Signals, *, finished: bool) -> None:
        self.signal = sig
        self.finished = finished  # the coroutine's cleanup completed within the grace period
        super().__init__(f"stopped by {sig.name}" + ("" if finished else " (cleanup abandoned after the grace period)"))

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + int(self.signal)


def run_until_stopped(
    main: Coroutine[Any, Any, T],
    *,
    grace: float = DEFAULT_GRACE_S,
    signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
    on_signal: Callable[[signal.Signals], None] | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
) -> T:
    """Run ``main`` on a new event loop (made by ``loop_factory``, e.g. ``uvloop.new_event_loop``)
    and return its result; on the first of ``signals``: cancel ``main``, call ``on_signal`` (to
    say what is being stopped) and wait up to ``grace`` seconds for ``main`` to finish, then
    raise :class:`Stopped`. A ``main`` that handles the cancellation and returns a value returns it.
    """
    loop = loop_factory()
    executor = DaemonThreadExecutor(thread_name_prefix="asyncio-worker")
    loop.set_default_executor(executor)
    stopper = _Stopper(loop, grace, on_signal)
    installed = []
    try:
        asyncio.set_event_loop(loop)
        for sig in signals:  # until the loop is closed: a late signal only ends the wait sooner
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(sig, stopper.stop, sig)
                installed.append(sig)
        try:
            return loop.run_until_complete(stopper.supervise(main))
        except KeyboardInterrupt:  # a SIGINT that reached Python's handler (``main`` removed ours)
            raise Stopped(signal.SIGINT, finished=False) from None
        finally:
            _finish_tasks(loop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        executor.shutdown(wait=False, cancel_futures=True)
        asyncio.set_event_loop(None)
        loop.close()


class _Stopper:
    """The signal handlers' side of :func:`run_until_stopped`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, grace: float,
                 on_signal: Callable[[signal.Signals], None] | None) -> None:
        self.loop = loop
        self.grace = grace
        self.on_signal = on_signal
        self.received: list[signal.Signals] = []
        self.task: asyncio.Task[Any] | None = None
        self.give_up: asyncio.Future[None] = loop.create_future()

    async def supervise(self, main: Coroutine[Any, Any, T]) -> T:
        task: asyncio.Task[T] = self.loop.create_task(main)
        self.task = task
        if self.received:  # a signal came before the loop ran
            task.cancel()
        waited: set[asyncio.Future[Any]] = {task, self.give_up}
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise Stopped(self.received[0], finished=False)
        if task.cancelled() and self.received:
            raise Stopped(self.received[0], finished=True)
        return task.result()

    def stop(self, sig: signal.Signals) -> None:
        self.received.append(sig)
        if len(self.received) > 1:  # asked again: stop waiting for the cleanup
            self._abandon()
            return
        if self.task is not None:
            self.task.cancel()
        self.loop.call_later(self.grace, self._abandon)
        if self.on_signal is not None:
            self.on_signal(sig)

    def _abandon(self) -> None:
        if not self.give_up.done():
            self.give_up.set_result(None)


def _finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still running, give it a moment, and close the async generators (bounded)."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()

    async def settle() -> None:
        if pending:
            await asyncio.wait(pending, timeout=_TASKS_GRACE_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loop.shutdown_asyncgens(), _TASKS_GRACE_S)

    loop.run_until_complete(settle())
    for t in pending:
        if t.done() and not t.cancelled() and t.exception() is not None:
            loop.call_exception_handler({"message": "unhandled exception during shutdown",
                                         "exception": t.exception(), "task": t})


class DaemonThreadExecutor(ThreadPoolExecutor):
    """A thread pool whose workers are daemon threads that neither ``shutdown(wait=False)`` nor
    the interpreter's exit waits for: a call blocked in a worker cannot hold the process.

    Same contract as :class:`ThreadPoolExecutor` (it is one, as ``loop.set_default_executor``
    requires; none of its own machinery is used): up to ``max_workers`` threads (default
    ``min(32, CPUs + 4)``), a new one started only when no worker is idle.
    """

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "worker") -> None:
        super().__init__(max_workers, thread_name_prefix)
        self._limit = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._prefix = thread_name_prefix
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], None]] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._workers: list[threading.Thread] = []
        self._guard = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def job() -> None:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller through the future, as ThreadPoolExecutor does
                future.set_exception(exc)
            else:
                future.set_result(result)

        with self._guard:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.put((future, job))
            if not self._idle.acquire(blocking=False) and len(self._workers) < self._limit:
                worker = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._prefix}_{len(self._workers)}")
                self._workers.append(worker)
                worker.start()
        return future

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                self._jobs.put(None)  # wake the next worker too
                return
            future, job = item
            if future.set_running_or_notify_cancel():
                job()
            del item, future, job
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._guard:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            self._jobs.put(None)
        if wait:
            for worker in list(self._workers):
                worker.join()
