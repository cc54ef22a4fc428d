"""Priority admission for a saturated pool (infergate's flow control; off by default).

Off (upstream v1.0 behaviour): a request with priority < 0 is rejected with 429 when the
pool is saturated; every other request is admitted at once.

On: requests are admitted while the pool has *capacity*; otherwise they wait in one
queue ordered by priority (higher first) and arrival (FIFO within a priority) and are
released, head first, as capacity frees. Capacity is a number of requests supplied by the
caller (the Director computes it from fresh metrics minus the requests it sent that the
last scrape cannot show yet, so a burst is not released into one stale snapshot). Rules:

* priority < 0 (sheddable) and no capacity -> 429 at once, never queued (as upstream);
* the queue is bounded (``max_queued``): when full, a new request of higher priority than
  the lowest queued one evicts it (the evicted one gets 429), otherwise the new one gets 429;
* a request waits at most ``max_wait`` seconds, then gets 429;
* a waiting request whose client goes away (task cancelled) leaves the queue;
* released-but-not-yet-scheduled requests count against capacity (``scheduled()`` ends that).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from infergate.epp.contract import Rejection

EXHAUSTED = "InferencePoolResourceExhausted"


PLACEMENTS = ("scheduler", "headroom")


@dataclass(frozen=True)
class FlowControlConfig:
    enabled: bool = False
    max_queued: int = 1024
    max_wait: float = 30.0  # seconds
    # where an admitted request may go: "scheduler" = wherever the scheduler picks among every
    # candidate (flow control only decides *when*: late binding, docs/epp.md "Flow control
    # placement"); "headroom" = only the endpoints with headroom (every one when none has)
    placement: str = "scheduler"

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"flow control placement: {self.placement!r} is not one of {', '.join(PLACEMENTS)}")


@dataclass
class _Waiter:
    priority: int
    seq: int
    request_id: str
    future: asyncio.Future[None]


class FlowController:
    def __init__(self, config: FlowControlConfig, capacity: Callable[[], int],
                 on_queue_size: Callable[[int], None] | None = None,
                 capacity_over: Callable[[int], bool] | None = None) -> None:
        self.config = config
        self.capacity = capacity
        # ``capacity_over(n)``: ``capacity() > n``, answered without counting every endpoint once it is
        # (a request admitted at once costs O(1), not O(endpoints)); default: from ``capacity``
        self.capacity_over = capacity_over or (lambda n: capacity() > n)
        self.on_queue_size = on_queue_size
        self._heap: list[tuple[int, int, _Waiter]] = []
        self._seq = itertools.count()
        self._pending = 0  # released, not yet scheduled
        self.admitted = 0
        self.queued_total = 0
        self.rejected = 0

    @property
    def queue_size(self) -> int:
        return sum(1 for _, _, w in self._heap if not w.future.done())

    def _report(self) -> None:
        if self.on_queue_size is not None:
            self.on_queue_size(self.queue_size)

    def _free(self) -> int:
        return self.capacity() - self._pending

    def may_wait(self) -> bool:
        """Whether ``admit`` could make a request arriving now wait: flow control is on and requests
        wait or there is no free capacity (the negation of ``admit``'s at-once test). False means a
        request admitted in the same synchronous stretch does not wait."""
        return self.config.enabled and (bool(self._heap) or not self.capacity_over(self._pending))

    async def admit(self, request_id: str, priority: int, on_queued: Callable[[], None] | None = None) -> None:
        """Return when the request may be scheduled; raise ``Rejection`` (429) otherwise.
        ``on_queued`` is called once if the request has to wait in the queue (the ext_proc
        server then tells the proxy to wait longer than its per-message timeout).

        With flow control off this only applies upstream's sheddable check; callers then
        need not call ``scheduled()`` (it is harmless)."""
        if not self.config.enabled:
            if priority < 0 and self.capacity() <= 0:
                self.rejected += 1
                raise Rejection(429, EXHAUSTED, "system saturated, sheddable request dropped")
            self.admitted += 1
            return
        if not self._heap and self.capacity_over(self._pending):
            self._pending += 1
            self.admitted += 1
            return
        if priority < 0:
            self.rejected += 1
            raise Rejection(429, EXHAUSTED, "system saturated, sheddable request dropped")
        self._make_room(priority)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(priority, next(self._seq), request_id, loop.create_future())
        heapq.heappush(self._heap, (-priority, waiter.seq, waiter))
        self.queued_total += 1
        self._report()
        self.notify()
        if on_queued is not None and not waiter.future.done():
            on_queued()
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that arrives as the
            # future completes (the client left as its request was released: its slot would stay taken)
            async with asyncio.timeout(self.config.max_wait):
                await asyncio.shield(waiter.future)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                return  # released at the deadline: keep it
            waiter.future.cancel()
            self._drop_done()
            self.rejected += 1
            raise Rejection(429, EXHAUSTED,
                            f"request waited {self.config.max_wait:g}s in the flow control queue") from None
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                self._pending -= 1  # released but the client left: give the slot back
            else:
                waiter.future.cancel()
            self._drop_done()
            self.notify()
            raise
        self.admitted += 1

    def _make_room(self, priority: int) -> None:
        self._drop_done()
        if len(self._heap) < self.config.max_queued:
            return
        # lowest priority, latest arrival = the largest heap key
        worst_index = max(range(len(self._heap)), key=lambda i: self._heap[i][:2])
        worst = self._heap[worst_index][2]
        if worst.priority >= priority:
            self.rejected += 1
            raise Rejection(429, EXHAUSTED, "flow control queue is full")
        self._heap.pop(worst_index)
        heapq.heapify(self._heap)
        worst.future.set_exception(Rejection(429, EXHAUSTED, "evicted from the flow control queue by a higher priority request"))

    def _drop_done(self) -> None:
        if any(w.future.done() for _, _, w in self._heap):
            self._heap = [item for item in self._heap if not item[2].future.done()]
            heapq.heapify(self._heap)
            self._report()

    def notify(self) -> None:
        """Capacity may have changed: release queued requests, head first, while there is room."""
        if not self._heap:
            return
        released = False
        while self._heap and self._free() > 0:
            _, _, waiter = heapq.heappop(self._heap)
            if waiter.future.done():
                continue
            self._pending += 1
            waiter.future.set_result(None)
            released = True
        if released:
            self._report()

    def scheduled(self) -> None:
        """A released request has been scheduled (its load now shows in capacity) or failed (its
        slot is free again, and nothing else would show it before the next scrape): re-check the
        queue either way."""
        if self._pending > 0:
            self._pending -= 1
            self.notify()
