"""Watch streams: a replay (the current state, or the events since a resourceVersion) then
live events, bookmarks and the end of ``timeoutSeconds``.

The subscription is registered in the same synchronous step as the replay is read, so no
event can slip between them; live events at or before that point are skipped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from infergate.apiserver.errors import APIError, bad_request
from infergate.apiserver.handlers.common import Target, external, matchers, meta, truthy
from infergate.apiserver.store import ResourceVersionTooOld, Store, WatchEvent
from infergate.apiserver.table import to_table
from infergate.apiserver.watch import Subscription, WatchHub

BOOKMARK_INTERVAL = 30.0

Selected = Callable[[dict[str, Any]], bool]
Change = tuple[str, dict[str, Any]]  # (event type, object) as sent


def selection_event(event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None,
                    selected: Selected) -> str | None:
    """The type of event a selecting watch sends for a change, or None to send nothing.

    A MODIFIED object that entered the selection (labels, fields, name) is ADDED to the
    watcher's view; one that left it is DELETED from it; others are sent when selected.
    """
    now_selected = selected(obj)
    if event_type == "MODIFIED" and previous is not None and now_selected != selected(previous):
        return "ADDED" if now_selected else "DELETED"
    return event_type if now_selected else None


@dataclass(frozen=True)
class WatchOptions:
    """The query of a watch request."""

    selected: Selected
    send_initial: bool
    bookmarks: bool
    resource_version: str
    timeout: float | None

    @classmethod
    def of(cls, request: web.Request, target: Target) -> WatchOptions:
        labels, fields = matchers(request)
        name = target.name

        def selected(obj: dict[str, Any]) -> bool:
            return labels(obj) and fields(obj) and (name is None or meta(obj).get("name") == name)

        query = request.query
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds", "").isdigit() else None
        return cls(selected, truthy(query.get("sendInitialEvents")), truthy(query.get("allowWatchBookmarks")),
                   query.get("resourceVersion", ""), timeout)


@dataclass
class Replay:
    """Where a watch starts: the changes to send first, up to ``last_rv``, or ``too_old``."""

    changes: list[Change]
    last_rv: int
    too_old: str | None = None


def replay(store: Store, target: Target, options: WatchOptions) -> Replay:
    """The current state (``sendInitialEvents``, or no/zero resourceVersion) as ADDED events,
    else the selected events since the requested resourceVersion."""
    rtype = target.rtype
    last_rv = store.resource_version
    if options.send_initial or options.resource_version in ("", "0"):
        return Replay([("ADDED", o) for o in store.list_objects(rtype.group, rtype.resource, target.namespace)
                       if options.selected(o)], last_rv)
    try:
        since = int(options.resource_version)
    except ValueError:
        raise bad_request(f"invalid resourceVersion {options.resource_version!r}") from None
    if since > last_rv:  # kube-apiserver's NewTooLargeResourceVersionError
        raise APIError(504, "Timeout", f"Too large resource version: {since}, current: {last_rv}",
                       {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                        "retryAfterSeconds": 1})
    try:
        events = store.events_since(since, rtype.group, rtype.resource)
    except ResourceVersionTooOld as exc:
        return Replay([], last_rv, str(exc))
    changes: list[Change] = []
    for event in events:
        if target.namespace is not None and event.namespace != target.namespace:
            continue
        sent = selection_event(event.type, event.object, event.previous, options.selected)
        if sent is not None:
            changes.append((sent, event.object))
    return Replay(changes, last_rv)


class _Encoder:
    """Watch events as JSON lines; as Table rows when asked (columns in the first only)."""

    def __init__(self, request: web.Request, target: Target) -> None:
        self.target = target
        self.as_table = "as=Table" in request.headers.get("Accept", "")
        self.include_object = request.query.get("includeObject", "Metadata")
        self.first = True

    def event(self, event_type: str, obj: dict[str, Any]) -> bytes:
        obj = external(self.target, obj)
        if self.as_table:
            obj = to_table(self.target.rtype, self.target.version, [obj], meta(obj).get("resourceVersion", ""),
                           self.include_object, with_columns=self.first)
        self.first = False
        return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"

    def bookmark(self, rv: int, initial_end: bool = False) -> bytes:
        bookmark_meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            bookmark_meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        rtype = self.target.rtype
        obj = {"kind": rtype.kind, "apiVersion": rtype.api_version(self.target.version), "metadata": bookmark_meta}
        return json.dumps({"type": "BOOKMARK", "object": obj}, separators=(",", ":")).encode() + b"\n"


class Watcher:
    """Serves ``?watch=true`` requests from the store and the hub of committed events."""

    def __init__(self, store: Store, hub: WatchHub) -> None:
        self.store = store
        self.hub = hub

    async def watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        options = WatchOptions.of(request, target)
        rtype = target.rtype
        # synchronous: subscribe and read the starting point with no await in between
        sub = self.hub.subscribe(rtype.group, rtype.resource, target.namespace)
        try:
            start = replay(self.store, target, options)
        except APIError:
            self.hub.unsubscribe(sub)
            raise
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        encoder = _Encoder(request, target)
        try:
            await response.prepare(request)
            if start.too_old is not None:
                status = APIError(410, "Expired", start.too_old).status()
                await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
                return response
            for event_type, obj in start.changes:
                await response.write(encoder.event(event_type, obj))
            if options.send_initial:
                await response.write(encoder.bookmark(start.last_rv, initial_end=True))
            await self._live(response, sub, encoder, options, start.last_rv)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(sub)
        return response

    async def _live(self, response: web.StreamResponse, sub: Subscription, encoder: _Encoder,
                    options: WatchOptions, last_rv: int) -> None:
        """Send the selected events after ``last_rv`` until the hub closes the stream or the
        timeout ends it; a bookmark every quiet BOOKMARK_INTERVAL when asked."""
        deadline = time.monotonic() + options.timeout if options.timeout is not None else None
        while True:
            wait = BOOKMARK_INTERVAL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes with
            # an event, and the stream then outlived its handler's cancel (server shutdown)
            try:
                async with asyncio.timeout(wait):
                    event: WatchEvent | None = await sub.queue.get()
            except TimeoutError:
                if options.bookmarks and (deadline is None or time.monotonic() < deadline):
                    await response.write(encoder.bookmark(self.store.resource_version))
                continue
            if event is None:
                return
            if event.resource_version <= last_rv:
                continue
            sent = selection_event(event.type, event.object, event.previous, options.selected)
            if sent is not None:
                await response.write(encoder.event(sent, event.object))
