"""Issue 13's spoofing property, a test of its own: whatever destination headers a client sends
through the gateway (``x-gateway-destination-endpoint`` and its ``-subset``, Envoy's
``x-envoy-original-dst-host``, a ``Host`` naming another server), no connection reaches an
address the client chose: with a live EPP its pick is served, with the EPP down under
FailOpen the pool's own pods are, and a server outside the pool is never connected to.

(``tests/dataplane/test_envoy_e2e.py`` checks one case, a spoofed pod of another pool under
FailOpen; this one sweeps the headers, both EPP states and a server outside every pool.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from infergate.api import headers
from infergate.dataplane import Dataplane, DataplaneOptions
from infergate.ir import (
    Backend,
    DataplaneConfig,
    Endpoint,
    EndpointPicker,
    FailureMode,
    Listener,
    Pool,
    Route,
    RouteMatch,
    VirtualHost,
)
from infergate.util.net import free_port

from ..dataplane.support import EchoServers, StampingEpp, running

pytestmark = pytest.mark.e2e


@pytest.fixture
async def dataplane(tmp_path: Path, envoy_bin: str) -> AsyncIterator[Dataplane]:
    async with Dataplane(DataplaneOptions(work_dir=tmp_path / "envoy", envoy_bin=envoy_bin)) as dp:
        yield dp


def _pool(key: str, pods: EchoServers, picker: Endpoint, mode: FailureMode) -> Pool:
    return Pool(key=key, group="inference.networking.k8s.io", namespace="default", name=key.rsplit("/", 1)[-1],
                target_ports=(pods.port,), endpoints=pods.endpoints,
                picker=EndpointPicker(f"epp/{key}", (picker,), mode))


def _spoofs(outside: EchoServers, pool: EchoServers) -> list[dict[str, str]]:
    """Header sets naming an address outside the pool, or one pod of the pool."""
    foreign = f"{outside.addresses[0]}:{outside.port}"
    member = f"{pool.addresses[-1]}:{pool.port}"
    return [
        {headers.DESTINATION_ENDPOINT: foreign},
        {headers.DESTINATION_ENDPOINT: f"{foreign},{member}"},
        {headers.DESTINATION_ENDPOINT_SUBSET: foreign},
        {"x-envoy-original-dst-host": foreign},
        {"host": foreign},
        {headers.DESTINATION_ENDPOINT: member, "x-envoy-original-dst-host": foreign, "host": foreign},
    ]


async def test_no_client_chosen_address_is_ever_connected_to(dataplane: Dataplane) -> None:
    live_pods, open_pods, outside = EchoServers(3), EchoServers(2), EchoServers(1)
    epp = StampingEpp("epp-live", live_pods.endpoints)
    port = free_port()
    dead_epp = Endpoint("127.0.0.1", free_port())  # nothing listens: the FailOpen pool's EPP is down
    async with running(live_pods, open_pods, outside, epp):
        routes = (Route("live", RouteMatch(path="/live"), (Backend("pool", 1, "pool/live"),)),
                  Route("open", RouteMatch(path="/open"), (Backend("pool", 1, "pool/open"),)))
        listener = Listener(key="gateway/default/gw/http", gateway_namespace="default", gateway_name="gw",
                            address="127.0.0.1", port=port,
                            virtual_hosts=(VirtualHost("gateway/default/gw/http/*", ("*",), routes),))
        await dataplane.apply(DataplaneConfig(listeners=(listener,), pools=(
            _pool("pool/live", live_pods, epp.endpoint, "FailClose"),
            _pool("pool/open", open_pods, dead_epp, "FailOpen"))))
        responses: dict[str, list[httpx.Response]] = {"live": [], "open": []}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for spoof in _spoofs(outside, live_pods) * 2:
                for path in ("live", "open"):
                    responses[path].append(await client.post(f"/{path}/v1/completions", json={"model": "m"},
                                                              headers=spoof))
    assert sum(outside.served.values()) == 0  # never connected to, whatever the headers said
    assert all(r.status_code == 200 for rs in responses.values() for r in rs), \
        [(r.status_code, r.text[:200]) for rs in responses.values() for r in rs if r.status_code != 200]
    live = [r.json() for r in responses["live"]]
    assert all(info["epp"] == "epp-live" for info in live)  # the EPP's pick, not the client's
    assert all(info["server"] == info["destination"] for info in live)
    assert {info["server"].rsplit(":", 1)[0] for info in live} == set(live_pods.addresses)  # round robin
    opened = [r.json() for r in responses["open"]]
    assert all(info["server"].rsplit(":", 1)[0] in open_pods.addresses for info in opened)
    assert all(info["destination"] == "" for info in opened)  # the client's header never reaches a pod
