"""IR for the data-plane e2e tests: one Gateway listener whose routes each send to one GA pool,
pools of simulator replicas picked by an ``infergate epp`` process, and that EPP's static file."""

from __future__ import annotations

from typing import Any

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
from infergate.sim.cluster import SimCluster

GA = "inference.networking.k8s.io"


def ir_pool(name: str, endpoints: tuple[Endpoint, ...], port: int, picker: tuple[Endpoint, ...],
            mode: FailureMode = "FailClose") -> Pool:
    return Pool(key=f"pool/{GA}/default/{name}", group=GA, namespace="default", name=name, target_ports=(port,),
                endpoints=endpoints, picker=EndpointPicker(f"epp/default/{name}-epp", picker, mode))


def sim_pool(sims: SimCluster, epp_port: int, name: str = "p", mode: FailureMode = "FailClose") -> Pool:
    """The simulator replicas as a pool whose EPP listens on ``127.0.0.1:epp_port``."""
    return ir_pool(name, tuple(Endpoint(r.host, sims.port) for r in sims.replicas), sims.port,
                   (Endpoint("127.0.0.1", epp_port),), mode)


def gateway(port: int, routes: list[tuple[str | RouteMatch, Pool]], pools: list[Pool]) -> DataplaneConfig:
    """One listener on ``127.0.0.1:port``; each route (a path prefix or a match) sends to its pool."""
    rules = tuple(Route(f"httproute/default/r/rule/{i}", match if isinstance(match, RouteMatch)
                        else RouteMatch(path=match), (Backend("pool", 1, p.key),))
                  for i, (match, p) in enumerate(routes))
    listener = Listener("gateway/default/gw/http", "default", "gw", "127.0.0.1", port,
                        (VirtualHost("gateway/default/gw/http/*", ("*",), rules),))
    return DataplaneConfig(listeners=(listener,), pools=tuple(pools))


def epp_static(sims: SimCluster, name: str = "p") -> dict[str, Any]:
    """``infergate epp --static-file`` content for a GA pool of the simulator replicas."""
    return {
        "pool": {"name": name, "namespace": "default", "group": GA, "targetPorts": [sims.port]},
        "endpoints": [{"name": r.name, "address": r.host, "port": sims.port, "ready": True} for r in sims.replicas],
        "models": [],
    }
