"""Defaults the real API server fills in for built-in kinds (the subset clients rely on),
and the ``default`` values of a CRD's structural schema."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from typing import Any

# Service cluster IPs. There is no kube-proxy on the embedded control plane, so a cluster IP
# routes nowhere; it is taken from loopback so that a client falling back to it (the EPP
# metrics probe of `infergate migrate`, a gateway resolving a selector-less Service) never
# sends a packet off the machine. (A real cluster uses its own range, e.g. 10.96.0.0/12.)
SERVICE_CIDR = ipaddress.ip_network("127.96.0.0/16")
FIRST_SERVICE_HOST = 10


def allocate_cluster_ip(in_use: Iterable[str]) -> str:
    used = set(in_use)
    for offset in range(FIRST_SERVICE_HOST, SERVICE_CIDR.num_addresses - 1):
        candidate = str(SERVICE_CIDR.network_address + offset)
        if candidate not in used:
            return candidate
    raise RuntimeError(f"the service address range {SERVICE_CIDR} is full")


def _section(obj: dict[str, Any], name: str) -> dict[str, Any] | None:
    """``obj[name]``, created empty when absent; None when it is not an object (the shape check
    refuses such a body with a 400: defaulting must not turn it into a 500)."""
    value = obj.setdefault(name, {})
    return value if isinstance(value, dict) else None


def default_service(obj: dict[str, Any], in_use: Iterable[str]) -> None:
    spec = _section(obj, "spec")
    if spec is None:
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])
    if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
        spec["clusterIP"] = allocate_cluster_ip(in_use)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]


def default_pod(obj: dict[str, Any]) -> None:
    status = _section(obj, "status")
    if status is not None:
        status.setdefault("phase", "Pending")
    spec = _section(obj, "spec")
    if spec is None:
        return
    spec.setdefault("restartPolicy", "Always")
    for container in spec.get("containers") or []:
        if isinstance(container, dict):
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def default_workload(obj: dict[str, Any]) -> None:
    """Deployments, ReplicaSets, StatefulSets: ``spec.replicas`` defaults to 1; Deployments
    also get the rollout defaults (RollingUpdate 25%/25%, 10 revisions, 600 s deadline)."""
    spec = _section(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    if obj.get("kind") == "Deployment":
        strategy = _section(spec, "strategy")
        if strategy is not None:
            strategy.setdefault("type", "RollingUpdate")
            rolling = _section(strategy, "rollingUpdate") if strategy["type"] == "RollingUpdate" else None
            if rolling is not None:
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)


def apply_schema_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Fill ``default`` values of a structural schema into ``value`` (in place; returns it)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value and isinstance(sub, dict):
                apply_schema_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in properties:
                    apply_schema_defaults(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_schema_defaults(item, schema["items"])
    return value
