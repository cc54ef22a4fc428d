"""`infergate envoy`'s drain on SIGTERM, against a stand-in for Envoy's admin API (no process).

Envoy keeps a draining listener's idle keep-alive connections open (a request on one is answered
with ``connection: close``), and the service proxy of the local runtime, a load balancer or a
client pool may still hold such connections. While requests keep arriving on them (a pool that
pinned them to this pod under load), the drain waits for them to close after their last answer:
stopping Envoy would close them under a client writing its next request (the rolling update of
the chart's e2e test lost one that way). Once no request has started for ``idle_close_seconds``
and none is active, the connections left are idle and do not hold the pod: before, the drain
waited for their clients to close them, so a stream in flight at SIGTERM (whose answer began
without ``connection: close``) held every Envoy pod stop for the whole drain time.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from infergate.dataplane.envoy_pod import Downstream, DrainProgress, PodEnvoyOptions, drain, open_downstream
from infergate.util.net import free_port


@dataclass
class FakeAdmin:
    """Envoy's admin API as the drain uses it: the stats say what ``connections`` and ``requests``
    return at the time asked (seconds since the drain started)."""

    connections: list[tuple[float, int]]  # (from this time on, open downstream connections)
    requests: list[tuple[float, int]] = field(default_factory=lambda: [(0.0, 0)])
    started: list[tuple[float, int]] = field(default_factory=lambda: [(0.0, 7)])  # requests started (a counter)
    calls: list[tuple[float, str]] = field(default_factory=list)
    began: float | None = None

    def value(self, steps: list[tuple[float, int]], now: float) -> int:
        return next(v for at, v in reversed(steps) if now >= at)

    def stats(self, now: float) -> str:
        cx, rq, total = (self.value(steps, now) for steps in (self.connections, self.requests, self.started))
        # as Envoy 1.40 names them: the listener (and each worker's share), the HTTP connection
        # manager, and the admin API's own (never counted: the drain's polling is one of them)
        lines = {
            "http.admin.downstream_cx_active": 1, "http.admin.downstream_rq_active": 1,
            "http.admin.downstream_rq_total": int(now * 10) + 1,
            "http.ingress_http.downstream_cx_active": cx, "http.ingress_http.downstream_rq_active": rq,
            "http.ingress_http.downstream_rq_total": total, "http.ingress_http.downstream_rq_completed": int(now * 10),
            "listener.10.0.0.7_8080.downstream_cx_active": cx,
            "listener.10.0.0.7_8080.worker_0.downstream_cx_active": cx,
            "listener.admin.downstream_cx_active": 1, "listener.admin.main_thread.downstream_cx_active": 1,
        }
        return "".join(f"{name}: {value}\n" for name, value in lines.items())

    def app(self) -> web.Application:
        async def post(request: web.Request) -> web.Response:
            if self.began is None:
                self.began = time.monotonic()
            self.calls.append((time.monotonic() - self.began, request.path))
            return web.Response(text="OK\n")

        async def stats(request: web.Request) -> web.Response:
            now = time.monotonic() - (self.began or time.monotonic())
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


async def drained_after(admin: FakeAdmin, port: int, drain_seconds: float, idle_close_seconds: float = 0.5) -> float:
    runner = web.AppRunner(admin.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        start = time.monotonic()
        await drain(PodEnvoyOptions(xds_host="h", xds_port=1, node_id="a/b", pod_ip="127.0.0.1", admin_port=port,
                                    drain_seconds=drain_seconds, idle_close_seconds=idle_close_seconds))
        return time.monotonic() - start
    finally:
        await runner.cleanup()


def every(step: float, until: float, start: int = 7) -> list[tuple[float, int]]:
    """A request started every ``step`` seconds until ``until`` (the counter's steps)."""
    return [(i * step, start + i) for i in range(int(until / step) + 1)]


async def test_connections_still_in_use_are_waited_for(admin_port: int) -> None:
    # no request active at any reading, but requests keep starting on two connections (a pool
    # pinned to this pod) until 0.6 s; each is answered with connection: close, gone at 0.8 s
    admin = FakeAdmin(connections=[(0.0, 2), (0.8, 0)], started=every(0.1, 0.6))
    took = await drained_after(admin, admin_port, drain_seconds=10, idle_close_seconds=0.3)
    assert [path for _, path in admin.calls] == ["/healthcheck/fail", "/drain_listeners"]
    assert 0.8 <= took < 2.5, took


async def test_idle_keep_alive_connections_do_not_hold_the_drain(admin_port: int) -> None:
    # two idle keep-alive connections that their clients never close, no request at all
    admin = FakeAdmin(connections=[(0.0, 2)])
    took = await drained_after(admin, admin_port, drain_seconds=5, idle_close_seconds=0.3)
    assert 0.3 <= took < 2.0, f"{took:.1f}s: idle connections held the drain"


async def test_a_request_in_flight_finishes_and_its_idle_connection_does_not_hold_the_drain(admin_port: int) -> None:
    # a stream in flight when the drain began (its answer started without connection: close)
    # ends at 0.5 s; its connection stays open, idle
    admin = FakeAdmin(connections=[(0.0, 1)], requests=[(0.0, 1), (0.5, 0)])
    took = await drained_after(admin, admin_port, drain_seconds=5, idle_close_seconds=0.3)
    assert 0.5 <= took < 2.0, f"{took:.1f}s"


async def test_the_drain_is_bounded_by_the_drain_time(admin_port: int) -> None:
    stuck = FakeAdmin(connections=[(0.0, 1)], requests=[(0.0, 1)])  # a request that never ends
    assert 0.4 <= await drained_after(stuck, admin_port, drain_seconds=0.4, idle_close_seconds=0.1) < 2.0
    busy = FakeAdmin(connections=[(0.0, 1)], started=every(0.05, 30))  # a connection always in use
    assert 0.4 <= await drained_after(busy, admin_port, drain_seconds=0.4, idle_close_seconds=0.3) < 2.0


def test_the_stats_count_the_listeners_and_requests_not_the_admin_api() -> None:
    stats = FakeAdmin(connections=[(0.0, 3)], requests=[(0.0, 2)], started=[(0.0, 41)]).stats(0.0)
    assert open_downstream(stats) == Downstream(connections=3, active_requests=2, requests_total=41)


def test_drain_progress_waits_for_quiet_after_the_last_request_started() -> None:
    progress = DrainProgress(idle_close_s=1.0, now=0.0)
    assert not progress.done(Downstream(1, 1, 5), now=0.0)  # a request active
    assert not progress.done(Downstream(1, 0, 5), now=0.5)  # idle for 0.5 s only
    assert not progress.done(Downstream(1, 0, 6), now=0.9)  # a request started meanwhile
    assert not progress.done(Downstream(1, 0, 6), now=1.8)
    assert progress.done(Downstream(1, 0, 6), now=2.0)  # quiet for 1 s: the connection is idle
    assert DrainProgress(1.0, now=0.0).done(Downstream(0, 0, 9), now=0.1)  # nothing open: at once
