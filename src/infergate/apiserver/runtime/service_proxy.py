"""The local runtime's service proxy: Service cluster IPs (and load-balancer IPs) that answer.

The embedded control plane has no kube-proxy. Its cluster IPs come from 127.96.0.0/16, which
is loopback, so this proxy can do what kube-proxy's old userspace mode did: for each Service
with a selector, listen on ``clusterIP:port`` (TCP) and forward each connection to a ready pod
the selector matches (round robin, named target ports resolved per pod), updated as Services
and Pods change (list + watch of both, one reconcile after each burst of events).

``type: LoadBalancer`` Services also get an address of ``load_balancer_pool`` (loopback,
stable per Service, kept in ``state_file``), written to ``status.loadBalancer.ingress[0].ip``
the way k3s's service load balancer reports node addresses, and the proxy listens there too.
The address is released (and the status cleared) when the Service is deleted or changes type.

    async with ServiceProxy(client, ServiceProxyOptions(state_file=dir / "lb-ips.json")) as proxy:
        proxy.listeners   # {(address, port): TcpForwarder}

An address that cannot be bound (a port below 1024 without the right, an address in use) is
logged and tried again every ``bind_retry_s`` while it is wanted; nothing else runs on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infergate.apiserver.runtime.addresses import PodIPAllocator
from infergate.apiserver.runtime.forwarder import ForwardLimits, TcpForwarder
from infergate.apiserver.runtime.service_endpoints import Backend, ListenKey, is_load_balancer, listeners_of
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.errors import KubeError
from infergate.kube.watch import ListWatch

log = logging.getLogger(__name__)

DEFAULT_LOAD_BALANCER_POOL = "127.0.4.0/24"


@dataclass(frozen=True)
class ServiceProxyOptions:
    load_balancer_pool: str = DEFAULT_LOAD_BALANCER_POOL  # loopback addresses for type: LoadBalancer
    state_file: Path | None = None  # Service -> load-balancer address, kept across restarts
    limits: ForwardLimits = field(default_factory=ForwardLimits)
    settle_s: float = 0.05  # events within this delay are reconciled together
    bind_retry_s: float = 5.0


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


class ServiceProxy:
    """Run as ``async with ServiceProxy(client, options): ...`` or ``start()`` / ``stop()``.

    The client is the caller's (opened by it, closed by it)."""

    def __init__(self, client: KubeClient, options: ServiceProxyOptions | None = None) -> None:
        self.client = client
        self.options = options or ServiceProxyOptions()
        self.lb_addresses = PodIPAllocator(self.options.load_balancer_pool, self.options.state_file,
                                           what="load-balancer pool")
        self.services: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.listeners: dict[ListenKey, TcpForwarder] = {}
        self.bind_errors: dict[ListenKey, str] = {}
        self._owner: dict[ListenKey, str] = {}  # listener -> its Service's key
        self._written_ingress: dict[str, str] = {}  # Service key -> the ingress IP its status shows
        self._changed = asyncio.Event()
        self._synced = {"services": asyncio.Event(), "pods": asyncio.Event()}
        self._listed: set[str] = set()  # the kinds listed at least once
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> ServiceProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._watch(kinds.SERVICES, self.services, "services").run(), name="proxy services"),
            asyncio.create_task(self._watch(kinds.PODS, self.pods, "pods").run(), name="proxy pods"),
            asyncio.create_task(self._loop(), name="service proxy"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        listeners, self.listeners = list(self.listeners.values()), {}
        await asyncio.gather(*(f.stop() for f in listeners), return_exceptions=True)

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Until both lists were read and the first reconcile ran."""
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._synced.values())), timeout)

    def backends_of(self, address: str, port: int) -> tuple[Backend, ...]:
        forwarder = self.listeners.get((address, port))
        return forwarder.backends if forwarder is not None else ()

    # -- watches -------------------------------------------------------------------------------

    def _watch(self, kind: kinds.Kind, cache: dict[str, dict[str, Any]], name: str) -> ListWatch:
        def on_list(items: list[dict[str, Any]]) -> None:
            cache.clear()
            cache.update({_key(i): i for i in items})
            self._listed.add(name)
            self._changed.set()

        def on_event(event_type: str, obj: dict[str, Any]) -> None:
            if event_type == "DELETED":
                cache.pop(_key(obj), None)
            elif event_type in ("ADDED", "MODIFIED"):
                cache[_key(obj)] = obj
            self._changed.set()

        return ListWatch(self.client, kind.path(), on_list=on_list, on_event=on_event, name=f"proxy {name}",
                         retry_delay=1.0)

    # -- reconcile -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            if self.bind_errors:  # retry the failed binds later, unless something changes first
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes
                # with the change, and the loop then outlived its stop
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.bind_retry_s):
                        await self._changed.wait()
            else:
                await self._changed.wait()
            await asyncio.sleep(self.options.settle_s)
            self._changed.clear()
            if self._listed < {"services", "pods"}:
                continue  # not everything listed yet: a partial view would drop listeners
            try:
                await self.reconcile()
            except Exception as exc:  # an API error: try again soon
                log.warning("service proxy: %s", exc)
                asyncio.get_running_loop().call_later(1.0, self._changed.set)
            for event in self._synced.values():
                event.set()

    async def reconcile(self) -> None:
        """Make the listeners, their backends and the load-balancer statuses match the Services."""
        pods = list(self.pods.values())
        wanted: dict[ListenKey, list[Backend]] = {}
        owner: dict[ListenKey, str] = {}
        lb_services: set[str] = set()
        for key, service in sorted(self.services.items()):
            lb_ip = None
            if is_load_balancer(service):
                lb_ip = self.lb_addresses.allocate(key)
                lb_services.add(key)
            for listen, backends in listeners_of(service, pods, lb_ip).items():
                if listen in owner:
                    log.warning("service %s: %s:%d is already served for %s", key, *listen, owner[listen])
                    continue
                wanted[listen] = backends
                owner[listen] = key
        for listen in [k for k in self.listeners if k not in wanted]:
            await self.listeners.pop(listen).stop()
            log.info("proxy: stopped %s:%d", *listen)
        self.bind_errors = {k: v for k, v in self.bind_errors.items() if k in wanted}
        for listen, backends in wanted.items():
            forwarder = self.listeners.get(listen)
            if forwarder is None:
                forwarder = TcpForwarder(*listen, limits=self.options.limits, name=f"service {owner[listen]}")
                try:
                    await forwarder.start()
                except OSError as exc:
                    if self.bind_errors.get(listen) != str(exc):
                        log.warning("service %s: cannot listen on %s:%d: %s", owner[listen], *listen, exc)
                    self.bind_errors[listen] = str(exc)
                    continue
                self.bind_errors.pop(listen, None)
                self.listeners[listen] = forwarder
                log.info("proxy: service %s on %s:%d", owner[listen], *listen)
            forwarder.set_backends(backends)
        self._owner = owner
        await self._write_load_balancer_statuses(lb_services)

    async def _write_load_balancer_statuses(self, lb_services: set[str]) -> None:
        for key, service in self.services.items():
            ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            shown = [str(i.get("ip")) for i in ingress if i.get("ip")]
            if key in lb_services:
                ip = self.lb_addresses.allocate(key)
                if shown != [ip] and self._written_ingress.get(key) != f"{ip}@{_rv(service)}":
                    await self._patch_ingress(service, [{"ip": ip}])
                    self._written_ingress[key] = f"{ip}@{_rv(service)}"
            elif self.lb_addresses.address_of(key) is not None:  # no longer a LoadBalancer
                self.lb_addresses.release(key)
                self._written_ingress.pop(key, None)
                if shown:
                    await self._patch_ingress(service, [])
        for key in [k for k in self.lb_addresses.holders() if k not in self.services]:  # deleted Services
            self.lb_addresses.release(key)
            self._written_ingress.pop(key, None)

    async def _patch_ingress(self, service: Mapping[str, Any], ingress: list[dict[str, str]]) -> None:
        meta = service.get("metadata") or {}
        path = kinds.SERVICES.path(meta.get("namespace") or "default", str(meta.get("name")), "status")
        try:
            await self.client.merge_patch(path, {"status": {"loadBalancer": {"ingress": ingress or None}}})
        except KubeError as exc:
            if exc.status != 404:
                raise


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
