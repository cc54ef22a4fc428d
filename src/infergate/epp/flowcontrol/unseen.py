"""Requests this EPP sent to an endpoint that the endpoint's last scrape may not show yet.

Flow control's capacity (the Director's ``_capacity``) counts them as extra queue on top of the
scraped waiting queue, so that a burst is not released into one stale snapshot. Shared by the
Director and the decision replay (``bench.peers.replay``), which must count them the same way.
"""

from __future__ import annotations

from collections import deque

from infergate.epp.metrics_scraper import EndpointMetrics

SEND_VISIBILITY_DELAY = 0.05  # seconds a sent request may take to reach the server's queue
MAX_UNSEEN_AGE = 5.0  # older sends are assumed visible (or the metrics are stale anyway)


class RecentSends:
    """When requests were sent to each endpoint, until a scrape started after them (their load is
    then in the scraped queue)."""

    def __init__(self) -> None:
        self._sends: dict[str, deque[float]] = {}

    def sent(self, hostport: str, now: float) -> None:
        sends = self._sends.get(hostport)
        if sends is None:
            sends = self._sends[hostport] = deque()
        while sends and sends[0] < now - MAX_UNSEEN_AGE:  # bounded even if scrapes stop
            sends.popleft()
        sends.append(now)

    def scraped(self, hostport: str, metrics: EndpointMetrics) -> None:
        """A scrape of ``hostport`` taken at ``metrics.update_time`` shows the sends made
        ``SEND_VISIBILITY_DELAY`` before it."""
        sends = self._sends.get(hostport)
        if sends:
            seen_before = metrics.update_time - SEND_VISIBILITY_DELAY
            while sends and sends[0] < seen_before:
                sends.popleft()

    def forget(self, hostport: str) -> None:
        self._sends.pop(hostport, None)

    def unseen(self, hostport: str, inflight: int, metrics: EndpointMetrics | None) -> int:
        """Requests sent to ``hostport`` that ``metrics`` (its last scrape) may not show yet: the
        sends newer than that scrape (by the clock) that can still be there, at most the requests
        this EPP has in flight there (``inflight``: a finished request is in no queue; without this
        bound a client sending short requests faster than the scrapes was held after a few), and at
        least as many as it has in flight beyond what the scrape shows running or waiting. The clock
        alone is not enough: on a loaded machine a request can take longer than
        SEND_VISIBILITY_DELAY to reach the server's queue, and a burst would then be released into
        a stale snapshot."""
        sends = self._sends.get(hostport)
        unseen = min(len(sends), inflight) if sends else 0
        if metrics is not None:
            unseen = max(unseen, inflight - metrics.running - metrics.waiting_queue)
        return unseen
