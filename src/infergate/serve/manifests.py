"""The Kubernetes objects ``infergate serve`` gives the gateway: what a user would apply.

One Gateway (listener ``http`` on the serve port), per pool an HTTPRoute (every request when
there is one pool; with several, a match on the body's model, which the gateway's body-based
routing copies into ``X-Gateway-Model-Name``), the InferencePool of the pool's generation, one
Ready Pod per endpoint, and the EPP's Service with an EndpointSlice (ports ``grpc`` and
``http-metrics``, where ``infergate status`` finds the EPP's metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infergate.api import headers
from infergate.controller.translator import DEFAULT_CONTROLLER_NAME
from infergate.serve.spec import PoolSpec

GATEWAY_API = "gateway.networking.k8s.io/v1"
GA_GROUP = "inference.networking.k8s.io"
GATEWAY_CLASS = "infergate-serve"
GATEWAY_NAME = "infergate-serve"
GATEWAY_NAMESPACE = "default"
POOL_LABEL = "infergate.io/serve-pool"
EPP_LABEL = "infergate.io/serve-epp"
EPP_HOST = "127.0.0.1"


@dataclass(frozen=True)
class EPPPorts:
    grpc: int
    metrics: int


def epp_service_name(pool: PoolSpec) -> str:
    return f"{pool.name}-epp"


def _pool_object(pool: PoolSpec, epp: EPPPorts, failure_mode: str) -> dict[str, Any]:
    # one target port (the API allows one); the EPP picks each endpoint's own port, this one
    # only matters to a fail-open fallback
    ports = [pool.endpoints[0].port if pool.endpoints else 8000]
    meta = {"name": pool.name, "namespace": pool.namespace}
    if pool.group == GA_GROUP:
        return {"apiVersion": f"{GA_GROUP}/v1", "kind": "InferencePool", "metadata": meta,
                "spec": {"selector": {"matchLabels": {POOL_LABEL: pool.name}},
                         "targetPorts": [{"number": ports[0]}],
                         "endpointPickerRef": {"name": epp_service_name(pool), "port": {"number": epp.grpc},
                                               "failureMode": failure_mode}}}
    return {"apiVersion": f"{pool.group}/v1alpha2", "kind": "InferencePool", "metadata": meta,
            "spec": {"selector": {POOL_LABEL: pool.name}, "targetPortNumber": ports[0],
                     "extensionRef": {"name": epp_service_name(pool), "portNumber": epp.grpc,
                                      "failureMode": failure_mode}}}


def _route(pool: PoolSpec, match_models: bool) -> dict[str, Any]:
    backend = {"group": pool.group, "kind": "InferencePool", "name": pool.name}
    rule: dict[str, Any] = {"backendRefs": [backend]}
    if match_models:
        rule["matches"] = [{"headers": [{"type": "Exact", "name": headers.MODEL_NAME, "value": model}]}
                           for model in pool.models]
    return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute",
            "metadata": {"name": f"serve-{pool.name}", "namespace": pool.namespace},
            "spec": {"parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}], "rules": [rule]}}


def _epp_objects(pool: PoolSpec, epp: EPPPorts) -> list[dict[str, Any]]:
    """The EPP as a Service selecting one Ready Pod on the EPP's address (the gateway resolves it)."""
    name, ns = epp_service_name(pool), pool.namespace
    labels = {EPP_LABEL: name}
    ports = [{"name": "grpc", "port": epp.grpc, "targetPort": epp.grpc},
             {"name": "http-metrics", "port": epp.metrics, "targetPort": epp.metrics}]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"selector": labels, "ports": ports}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"containers": [{"name": "epp", "image": "infergate",
                                  "ports": [{"name": p["name"], "containerPort": p["port"]} for p in ports]}]},
         "status": {"phase": "Running", "podIP": EPP_HOST, "podIPs": [{"ip": EPP_HOST}],
                    "conditions": [{"type": "Ready", "status": "True"}]}},
    ]


def _pods(pool: PoolSpec) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"{pool.name}-{i}", "namespace": pool.namespace,
                      "labels": {POOL_LABEL: pool.name},
                      "annotations": {"infergate.io/endpoint": endpoint.base_url}},
         "spec": {"containers": [{"name": "model-server", "image": "external",
                                  "ports": [{"containerPort": endpoint.port}]}]},
         "status": {"phase": "Running", "podIP": endpoint.address, "podIPs": [{"ip": endpoint.address}],
                    "conditions": [{"type": "Ready", "status": "True"}]}}
        for i, endpoint in enumerate(pool.endpoints)
    ]


def render(pools: Sequence[PoolSpec], epps: Sequence[EPPPorts], *, port: int,
           failure_mode: str = "FailClose") -> list[dict[str, Any]]:
    """Every object of the serve topology (``pools[i]`` is picked by the EPP on ``epps[i]``)."""
    objects: list[dict[str, Any]] = [
        {"apiVersion": GATEWAY_API, "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
         "spec": {"controllerName": DEFAULT_CONTROLLER_NAME}},
        {"apiVersion": GATEWAY_API, "kind": "Gateway", "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
         "spec": {"gatewayClassName": GATEWAY_CLASS,
                  "listeners": [{"name": "http", "port": port, "protocol": "HTTP",
                                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]
    for pool, epp in zip(pools, epps, strict=True):
        objects.append(_route(pool, match_models=len(pools) > 1))
        objects.append(_pool_object(pool, epp, failure_mode))
        objects.extend(_epp_objects(pool, epp))
        objects.extend(_pods(pool))
    return objects
