"""Fan-out of committed store events to open watch streams."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from infergate.apiserver.store import WatchEvent


@dataclass(eq=False)
class Subscription:
    group: str
    resource: str
    namespace: str | None  # None: every namespace
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)

    def wants(self, event: WatchEvent) -> bool:
        return (event.group == self.group and event.resource == self.resource
                and (self.namespace is None or event.namespace == self.namespace))


class WatchHub:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.closed = False

    def subscribe(self, group: str, resource: str, namespace: str | None) -> Subscription:
        sub = Subscription(group, resource, namespace)
        if self.closed:
            sub.queue.put_nowait(None)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def publish(self, event: WatchEvent) -> None:
        for sub in self._subscriptions:
            if sub.wants(event):
                sub.queue.put_nowait(event)

    def close_resource(self, group: str, resource: str) -> None:
        """End the watch streams of one resource (its CRD was deleted)."""
        for sub in self._subscriptions:
            if sub.group == group and sub.resource == resource:
                sub.queue.put_nowait(None)

    def close_all(self) -> None:
        """End every open watch stream (server shutdown)."""
        self.closed = True
        for sub in self._subscriptions:
            sub.queue.put_nowait(None)

    def __len__(self) -> int:
        return len(self._subscriptions)
