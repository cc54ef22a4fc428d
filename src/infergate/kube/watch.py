"""The one list/watch loop: an informer without the cache (the caller keeps what it needs).

:meth:`ListWatch.run` (an asyncio task; cancel it to stop) lists the collection, hands the
items to ``on_list``, then watches from the list's resourceVersion and hands every change to
``on_event``. It keeps the last resourceVersion it saw (events and bookmarks, which it asks
for with ``allowWatchBookmarks=true``):

- the server ends the stream (``timeoutSeconds``) or the connection drops: watch again from
  that resourceVersion, no relist (a drop waits a back-off first);
- 410 Gone, as the HTTP answer or as an ``ERROR`` event with code 410 (the version was
  compacted): list again;
- any other failure: back off (``retry_delay`` doubling up to ``max_retry_delay``, reset by a
  successful list or stream), then list again;
- 404 on the list (the resource is not served: its CRD is not installed): with
  ``missing_is_empty`` the collection counts as listed and empty, else it is not synced;
  either way the loop lists again every ``retry_delay``, so installing the CRD later works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from infergate.kube.client import KubeClient
from infergate.kube.errors import ConnectionFailed, Gone, KubeError, NotFound, error_from_event

log = logging.getLogger(__name__)

OnList = Callable[[list[dict[str, Any]]], None]
OnEvent = Callable[[str, dict[str, Any]], None]
CHANGES = ("ADDED", "MODIFIED", "DELETED")


class ListWatch:
    """List + watch of one collection (``path``, optionally narrowed by selectors)."""

    def __init__(self, client: KubeClient, path: str, *, on_list: OnList, on_event: OnEvent, name: str = "",
                 label_selector: str | None = None, field_selector: str | None = None, watch_timeout: int = 300,
                 retry_delay: float = 1.0, max_retry_delay: float = 10.0, missing_is_empty: bool = False) -> None:
        self.client = client
        self.path = path
        self.name = name or path
        self.on_list = on_list
        self.on_event = on_event
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._woken = asyncio.Event()
        self.missing_is_empty = missing_is_empty
        self.synced = asyncio.Event()  # the first list (or, with missing_is_empty, a 404) is done
        self.served = True  # False while the list answers 404
        self.resource_version = ""  # the last one seen: where a watch resumes
        self.lists = 0  # successful lists (the first one and every relist)
        self.resumes = 0  # watch streams that ended and were resumed from resource_version
        self.bookmarks = 0

    def _params(self) -> dict[str, str]:
        params = {}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        return params

    async def run(self) -> None:
        """List and watch until cancelled."""
        delay = self.retry_delay
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    delay = self.retry_delay
                await self._watch()
                self.resumes += 1  # the server ended the stream: resume where it stopped
                delay = self.retry_delay
                continue
            except Gone as exc:
                log.info("watch %s: %s; relisting", self.name, exc.message or "410 Gone")
                if not need_list:  # the first relist goes at once; a list that keeps expiring backs off
                    need_list = True
                    continue
            except NotFound as exc:
                if need_list:  # not served: poll at the base delay, or sooner when woken (a CRD was installed)
                    self._not_served()
                    await self._sleep_unless_woken(self.retry_delay)
                    continue
                log.warning("watch %s: %s; relisting", self.name, exc)
                need_list = True
            except ConnectionFailed as exc:  # resume from resource_version (or list again if never listed)
                log.warning("watch %s: %s; retrying in %.1fs", self.name, exc, delay)
            except KubeError as exc:
                log.warning("watch %s: %s; relisting in %.1fs", self.name, exc, delay)
                need_list = True
            except Exception as exc:  # a bad answer or a failing callback: start over from a list
                log.exception("watch %s failed: %s; relisting in %.1fs", self.name, exc, delay)
                need_list = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_delay)

    def wake(self) -> None:
        """Cut short the wait of a resource that is not served (its CRD was just installed)."""
        self._woken.set()

    async def _sleep_unless_woken(self, seconds: float) -> None:
        # a wake that came before the sleep ends it at once; asyncio.timeout, not wait_for: Python
        # 3.11's wait_for drops a cancel that comes with the wake, and the loop then outlived its stop
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._woken.wait()
        self._woken.clear()

    def _not_served(self) -> None:
        if self.served:
            log.info("%s is not served (CRD not installed?); retrying", self.name)
        self.served = False
        if self.missing_is_empty:
            self.on_list([])
            self.synced.set()

    async def _list(self) -> None:
        listed = await self.client.list(self.path, params=self._params())
        self.resource_version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        self.served = True
        self.on_list(list(listed.get("items") or []))
        self.lists += 1
        self.synced.set()

    async def _watch(self) -> None:
        async for event in self.client.watch(self.path, self.resource_version, self.watch_timeout,
                                             params=self._params()):
            kind, obj = event.get("type"), event.get("object")
            if not isinstance(obj, dict):
                continue
            if kind == "ERROR":
                raise error_from_event(obj, path=self.path)
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = str(version)
            if kind == "BOOKMARK":
                self.bookmarks += 1
            elif kind in CHANGES:
                self.on_event(str(kind), obj)
