"""ListWatch against the embedded API server (and, for the HTTP 410 answer, a scripted server):
resume after the stream ends and after a disconnect, relist on 410 Gone, bookmarks, cancellation."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from infergate.apiserver import EmbeddedAPIServer
from infergate.apiserver import store as store_module
from infergate.apiserver.handlers import watch as watch_handler
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.config import KubeConfig, load_config
from infergate.kube.errors import AlreadyExists, Conflict, Gone, NotFound
from infergate.kube.watch import ListWatch
from infergate.util.wait import async_wait_until


class Recorder:
    """What a ListWatch handed over: the names of each list, then (type, name) of each event."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def on_list(self, items: list[dict[str, Any]]) -> None:
        self.calls.append(("LIST", sorted(i["metadata"]["name"] for i in items)))

    def on_event(self, event_type: str, obj: dict[str, Any]) -> None:
        self.calls.append((event_type, obj["metadata"]["name"]))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[EmbeddedAPIServer]:
    async with EmbeddedAPIServer(tmp_path / "state") as server:
        yield server


@pytest.fixture
async def client(api: EmbeddedAPIServer) -> AsyncIterator[KubeClient]:
    async with KubeClient(load_config(api.kubeconfig_path)) as c:
        yield c


async def namespace(client: KubeClient) -> str:
    name = f"w-{uuid.uuid4().hex[:6]}"
    await client.create(kinds.NAMESPACES.path(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


async def configmap(client: KubeClient, ns: str, name: str) -> dict[str, Any]:
    return await client.create(kinds.CONFIGMAPS.path(ns), {"apiVersion": "v1", "kind": "ConfigMap",
                                                            "metadata": {"name": name}, "data": {"k": "v"}})


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    await async_wait_until(check, timeout=timeout, interval=0.02, what=what)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_errors_are_typed(client: KubeClient) -> None:
    ns = await namespace(client)
    await configmap(client, ns, "a")
    with pytest.raises(AlreadyExists) as exc:
        await configmap(client, ns, "a")
    assert isinstance(exc.value, Conflict) and exc.value.status == 409 and exc.value.reason == "AlreadyExists"
    with pytest.raises(NotFound):
        await client.request("GET", kinds.CONFIGMAPS.path(ns, "missing"))
    assert await client.get(kinds.CONFIGMAPS.path(ns, "missing")) is None
    stale = await client.merge_patch(kinds.CONFIGMAPS.path(ns, "a"), {"data": {"k": "w"}})
    stale["metadata"]["resourceVersion"] = "1"
    with pytest.raises(Conflict):
        await client.replace(kinds.CONFIGMAPS.path(ns, "a"), stale)
    assert await client.delete(kinds.CONFIGMAPS.path(ns, "a")) is True
    assert await client.delete(kinds.CONFIGMAPS.path(ns, "a")) is False


async def test_list_then_watch_and_resume_when_the_server_ends_the_stream(client: KubeClient) -> None:
    ns = await namespace(client)
    await configmap(client, ns, "a")
    seen = Recorder()
    lw = ListWatch(client, kinds.CONFIGMAPS.path(ns), on_list=seen.on_list, on_event=seen.on_event,
                   watch_timeout=1, retry_delay=0.05)
    task = asyncio.create_task(lw.run())
    try:
        await until(lambda: lw.synced.is_set(), "listed")
        await configmap(client, ns, "b")
        await until(lambda: ("ADDED", "b") in seen.calls, "b added")
        await until(lambda: lw.resumes >= 1, "stream ended by the server and resumed", timeout=5)
        await configmap(client, ns, "c")
        await client.delete(kinds.CONFIGMAPS.path(ns, "b"))
        await until(lambda: ("DELETED", "b") in seen.calls, "b deleted")
        assert seen.calls == [("LIST", ["a"]), ("ADDED", "b"), ("ADDED", "c"), ("DELETED", "b")]
        assert lw.lists == 1  # resumed from the last resourceVersion, never relisted
    finally:
        await stop(task)


async def test_resume_after_a_disconnect_from_the_last_resource_version(api: EmbeddedAPIServer, tmp_path: Path
                                                                       ) -> None:
    async with KubeClient(load_config(api.kubeconfig_path)) as client:
        ns = await namespace(client)
        await configmap(client, ns, "a")
        seen = Recorder()
        lw = ListWatch(client, kinds.CONFIGMAPS.path(ns), on_list=seen.on_list, on_event=seen.on_event,
                       watch_timeout=60, retry_delay=0.05, max_retry_delay=0.2)
        task = asyncio.create_task(lw.run())
        try:
            await until(lambda: lw.synced.is_set(), "listed")
            await configmap(client, ns, "b")
            await until(lambda: ("ADDED", "b") in seen.calls, "b added")
            version = lw.resource_version
            await api.stop()  # the connection drops mid-watch
            await asyncio.sleep(0.3)  # a few failed reconnects
            restarted = EmbeddedAPIServer(api.state_dir, port=api.port)
            await restarted.start()
            try:
                assert lw.resource_version == version
                await configmap(client, ns, "c")
                await until(lambda: ("ADDED", "c") in seen.calls, "c after the restart")
                assert seen.calls == [("LIST", ["a"]), ("ADDED", "b"), ("ADDED", "c")]
                assert lw.lists == 1  # resumed from b's resourceVersion, no relist
            finally:
                await stop(task)
                await restarted.stop()
        finally:
            if not task.done():
                await stop(task)


async def test_expired_resource_version_relists(client: KubeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compacted history: the resume answers an ERROR event with code 410; the loop lists again."""
    ns, elsewhere = await namespace(client), await namespace(client)
    await configmap(client, ns, "a")
    seen = Recorder()
    lw = ListWatch(client, kinds.CONFIGMAPS.path(ns), on_list=seen.on_list, on_event=seen.on_event,
                   watch_timeout=1, retry_delay=0.05)
    task = asyncio.create_task(lw.run())
    try:
        await until(lambda: lw.synced.is_set(), "listed")
        monkeypatch.setattr(store_module, "EVENT_RETENTION", 1)
        monkeypatch.setattr(store_module, "_PRUNE_EVERY", 1)
        for i in range(5):  # changes the watch does not see: its resourceVersion falls behind the history
            await configmap(client, elsewhere, f"x{i}")
        await until(lambda: lw.lists >= 2, "relisted after 410", timeout=5)
        await configmap(client, ns, "c")
        await until(lambda: ("ADDED", "c") in seen.calls, "c after the relist")
        assert seen.calls[:2] == [("LIST", ["a"]), ("LIST", ["a"])]
    finally:
        await stop(task)


async def test_bookmarks_move_the_resume_point(client: KubeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bookmarks carry the server's resourceVersion: the resume starts there and so survives compaction."""
    monkeypatch.setattr(watch_handler, "BOOKMARK_INTERVAL", 0.1)
    ns, elsewhere = await namespace(client), await namespace(client)
    await configmap(client, ns, "a")
    seen = Recorder()
    lw = ListWatch(client, kinds.CONFIGMAPS.path(ns), on_list=seen.on_list, on_event=seen.on_event,
                   watch_timeout=2, retry_delay=0.05)
    task = asyncio.create_task(lw.run())
    try:
        await until(lambda: lw.synced.is_set(), "listed")
        monkeypatch.setattr(store_module, "EVENT_RETENTION", 1)
        monkeypatch.setattr(store_module, "_PRUNE_EVERY", 1)
        for i in range(5):
            last = await configmap(client, elsewhere, f"x{i}")
        latest = last["metadata"]["resourceVersion"]
        await until(lambda: lw.resource_version == latest, "bookmark at the latest resourceVersion")
        assert lw.bookmarks >= 1
        resumes = lw.resumes
        await until(lambda: lw.resumes > resumes, "stream ended and resumed", timeout=5)
        await configmap(client, ns, "b")
        await until(lambda: ("ADDED", "b") in seen.calls, "b")
        assert lw.lists == 1  # the bookmark kept the resume point inside the (compacted) history
        assert seen.calls == [("LIST", ["a"]), ("ADDED", "b")]
    finally:
        await stop(task)


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


async def test_not_served_counts_as_empty_when_asked_and_recovers_once_the_crd_is_installed(
        client: KubeClient) -> None:
    seen = Recorder()
    widgets = kinds.Kind("example.com", "v1", "widgets", "Widget")
    lw = ListWatch(client, widgets.path(), on_list=seen.on_list, on_event=seen.on_event, retry_delay=0.05,
                   max_retry_delay=0.1, missing_is_empty=True)
    task = asyncio.create_task(lw.run())
    try:
        await until(lambda: lw.synced.is_set(), "synced although not served")
        assert not lw.served and seen.calls[0] == ("LIST", [])
        await client.create(kinds.CRDS.path(), WIDGET_CRD)
        ns = await namespace(client)
        await until(lambda: lw.served, "listed once the CRD is installed")
        await client.create(widgets.path(ns), {"apiVersion": "example.com/v1", "kind": "Widget",
                                               "metadata": {"name": "w"}})
        await until(lambda: ("ADDED", "w") in seen.calls, "the widget")
    finally:
        await stop(task)


async def test_wake_lists_a_resource_whose_crd_was_just_installed_without_waiting_the_poll(
        client: KubeClient) -> None:
    """A kind that is not served is polled every retry_delay; wake() (the gateway calls it when a
    CRD appears) lists it at once, so a pool applied right after its CRD is seen at once."""
    seen = Recorder()
    gizmos = kinds.Kind("example.com", "v1", "gizmos", "Gizmo")
    crd = {**WIDGET_CRD, "metadata": {"name": "gizmos.example.com"},
           "spec": {**WIDGET_CRD["spec"], "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo",
                                                    "listKind": "GizmoList"}}}
    lw = ListWatch(client, gizmos.path(), on_list=seen.on_list, on_event=seen.on_event, retry_delay=60.0,
                   missing_is_empty=True)
    task = asyncio.create_task(lw.run())
    try:
        await until(lambda: lw.synced.is_set() and not lw.served, "synced although not served")
        await client.create(kinds.CRDS.path(), crd)
        await asyncio.sleep(0.3)
        assert not lw.served  # the next poll is a minute away
        lw.wake()
        await until(lambda: lw.served, "listed at once when woken", timeout=5.0)
    finally:
        await stop(task)


async def test_http_410_on_the_watch_relists() -> None:
    """A server that answers the watch request itself with HTTP 410 (not an ERROR event)."""
    requests: list[dict[str, str]] = []
    watched = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        requests.append(query)
        if query.get("watch") != "true":
            lists = sum(1 for q in requests if q.get("watch") != "true")
            rv = "10" if lists == 1 else "20"
            name = "a" if lists == 1 else "b"
            return web.json_response({"kind": "ConfigMapList", "metadata": {"resourceVersion": rv},
                                      "items": [{"metadata": {"name": name, "resourceVersion": rv}}]})
        watches = sum(1 for q in requests if q.get("watch") == "true")
        if watches == 1:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                                      "reason": "Expired", "message": "too old resource version: 10 (15)"},
                                     status=410)
        response = web.StreamResponse()
        await response.prepare(request)
        if watches == 2:
            event = {"type": "ADDED", "object": {"metadata": {"name": "c", "resourceVersion": "21"}}}
            await response.write(json.dumps(event).encode() + b"\n")
            return response  # the stream ends: resume from 21
        watched.set()
        await asyncio.sleep(30)
        return response

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps", handler)
    async with TestServer(app) as server:
        seen = Recorder()
        async with KubeClient(KubeConfig(server=str(server.make_url("")).rstrip("/"))) as client:
            lw = ListWatch(client, "/api/v1/namespaces/ns/configmaps", on_list=seen.on_list,
                           on_event=seen.on_event, retry_delay=0.01)
            task = asyncio.create_task(lw.run())
            try:
                await asyncio.wait_for(watched.wait(), 5)
            finally:
                await stop(task)
    assert seen.calls == [("LIST", ["a"]), ("LIST", ["b"]), ("ADDED", "c")]
    watches = [q for q in requests if q.get("watch") == "true"]
    assert [q["resourceVersion"] for q in watches] == ["10", "20", "21"]  # 410 -> relist at 20; resume at 21
    assert all(q["allowWatchBookmarks"] == "true" for q in watches)
    assert lw.lists == 2


def test_gone_is_the_410_class() -> None:
    from infergate.kube.errors import error_for, error_from_event

    assert isinstance(error_for(410, '{"kind":"Status","code":410,"reason":"Expired"}'), Gone)
    event = error_from_event({"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
    assert isinstance(event, Gone) and event.message == "too old"


async def test_patch_types(client: KubeClient) -> None:
    ns = await namespace(client)
    path = kinds.CONFIGMAPS.path(ns, "p")
    await client.apply(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "namespace": ns},
                              "data": {"a": "1"}}, "test")
    await client.patch(path, {"data": {"b": "2"}}, "merge")
    await client.patch(path, {"data": {"c": "3"}}, "strategic")
    patched = await client.patch(path, [{"op": "remove", "path": "/data/a"}], "json")
    assert patched["data"] == {"b": "2", "c": "3"}
    managers = {m["manager"] for m in patched["metadata"].get("managedFields") or []}
    assert "test" in managers
