"""`infergate envoy`'s drain on SIGTERM, against a stand-in for Envoy's admin API (no process).

Envoy keeps a draining listener's idle keep-alive connections open (a request on one is answered
with ``connection: close``), and the service proxy of the local runtime, a load balancer or a
client pool may still hold such connections after the last request ended. Stopping Envoy then
closes them under the client: a request written on one as it closes gets no answer (the rolling
update of the chart's e2e test lost one that way). So the drain waits until no downstream
connection is open, not only until no request is active, bounded by ``drain_seconds``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from infergate.dataplane.envoy_pod import PodEnvoyOptions, drain
from infergate.util.net import free_port


@dataclass
class FakeAdmin:
    """Envoy's admin API as the drain uses it: the stats say what ``connections`` and ``requests``
    return at the time asked (seconds since the drain started)."""

    connections: list[tuple[float, int]]  # (from this time on, open downstream connections)
    requests: list[tuple[float, int]] = field(default_factory=lambda: [(0.0, 0)])
    calls: list[tuple[float, str]] = field(default_factory=list)
    started: float | None = None

    def value(self, steps: list[tuple[float, int]], now: float) -> int:
        return next(v for at, v in reversed(steps) if now >= at)

    def stats(self, now: float) -> str:
        cx, rq = self.value(self.connections, now), self.value(self.requests, now)
        # as Envoy 1.40 names them: the listener (and each worker's share), the HTTP connection
        # manager, and the admin API's own (never counted: the drain's polling is one of them)
        lines = {
            "http.admin.downstream_cx_active": 1, "http.admin.downstream_rq_active": 1,
            "http.ingress_http.downstream_cx_active": cx, "http.ingress_http.downstream_rq_active": rq,
            "listener.10.0.0.7_8080.downstream_cx_active": cx,
            "listener.10.0.0.7_8080.worker_0.downstream_cx_active": cx,
            "listener.admin.downstream_cx_active": 1, "listener.admin.main_thread.downstream_cx_active": 1,
        }
        return "".join(f"{name}: {value}\n" for name, value in lines.items())

    def app(self) -> web.Application:
        async def post(request: web.Request) -> web.Response:
            if self.started is None:
                self.started = time.monotonic()
            self.calls.append((time.monotonic() - self.started, request.path))
            return web.Response(text="OK\n")

        async def stats(request: web.Request) -> web.Response:
            now = time.monotonic() - (self.started or time.monotonic())
            pattern = re.compile(request.query.get("filter", ""))
            return web.Response(text="".join(line + "\n" for line in self.stats(now).splitlines()
                                             if pattern.search(line.partition(":")[0])))

        app = web.Application()
        app.router.add_post("/healthcheck/fail", post)
        app.router.add_post("/drain_listeners", post)
        app.router.add_get("/stats", stats)
        return app


@pytest.fixture
def admin_port() -> int:
    return free_port("127.0.0.1")


async def drained_after(admin: FakeAdmin, port: int, drain_seconds: float) -> float:
    runner = web.AppRunner(admin.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        start = time.monotonic()
        await drain(PodEnvoyOptions(xds_host="h", xds_port=1, node_id="a/b", pod_ip="127.0.0.1", admin_port=port,
                                    drain_seconds=drain_seconds))
        return time.monotonic() - start
    finally:
        await runner.cleanup()


async def test_the_drain_waits_for_idle_keep_alive_connections_to_close(admin_port: int) -> None:
    # no request in flight from the start, but two idle keep-alive connections until 0.8 s
    admin = FakeAdmin(connections=[(0.0, 2), (0.8, 0)])
    took = await drained_after(admin, admin_port, drain_seconds=10)
    assert [path for _, path in admin.calls] == ["/healthcheck/fail", "/drain_listeners"]
    assert 0.8 <= took < 3.0, took


async def test_the_drain_waits_for_requests_and_is_bounded_by_the_drain_time(admin_port: int) -> None:
    admin = FakeAdmin(connections=[(0.0, 1), (0.5, 0)], requests=[(0.0, 1), (0.5, 0)])
    assert 0.5 <= await drained_after(admin, admin_port, drain_seconds=10) < 2.5
    stuck = FakeAdmin(connections=[(0.0, 1)])  # a client that never closes its connection
    assert 0.6 <= await drained_after(stuck, admin_port, drain_seconds=0.6) < 2.5
