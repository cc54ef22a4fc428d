"""The gateway dashboard (config/grafana/infergate-gateway.json) queries only series a real
Envoy, configured by infergate's xDS translator, exports on its admin /stats/prometheus after
serving requests."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from infergate.dataplane import Dataplane, DataplaneOptions
from infergate.ir import Backend, DataplaneConfig, Listener, Route, RouteMatch, Service, VirtualHost
from infergate.util.net import free_port

from ..dataplane.support import EchoServers, running
from .test_dashboards import DASHBOARDS, PROMQL_WORDS, SELECTOR, _targets

pytestmark = pytest.mark.e2e


async def _envoy_series(tmp_path: Path, envoy_bin: str) -> set[str]:
    pods = EchoServers(1)
    port = free_port()
    async with Dataplane(DataplaneOptions(work_dir=tmp_path / "envoy", envoy_bin=envoy_bin)) as dataplane, \
            running(pods):
        svc = Service("service/d/echo/80", "d", "echo", 80, pods.endpoints)
        routes = (Route("all", RouteMatch(path="/"), (Backend("service", 1, svc.key),)),)
        listener = Listener("gw/a", "d", "a", "127.0.0.1", port, (VirtualHost("v", ("*",), routes),))
        await dataplane.apply(DataplaneConfig(listeners=(listener,), services=(svc,)))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(3):
                assert (await client.get("/v1/models")).status_code == 200
        async with httpx.AsyncClient(timeout=10) as admin:
            text = (await admin.get(f"{dataplane.envoy.admin_url}/stats/prometheus")).text
    # the series names as Prometheus stores them: the first token of every sample line (Envoy's
    # counters have no _total suffix, which prometheus_client's parser would treat specially)
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


async def test_every_gateway_panel_queries_a_series_envoy_exports(tmp_path: Path, envoy_bin: str) -> None:
    exported = await _envoy_series(tmp_path, envoy_bin)
    assert "envoy_http_downstream_rq_total" in exported and "envoy_http_downstreams_rq_total" not in exported
    dashboard = json.loads((DASHBOARDS / "infergate-gateway.json").read_text())
    missing = [f"{title}: {name}" for title, expr in _targets(dashboard) for name in SELECTOR.findall(expr)
               if name not in PROMQL_WORDS and name not in exported]
    assert not missing, f"series queried but not exported by Envoy: {missing}"
    # the job variable's query names a series Envoy exports too
    assert "envoy_server_live" in exported
