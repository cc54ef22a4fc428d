"""Which addresses a Service's ports forward to: its selector's ready pods, the target port resolved.

Pure functions over plain objects (as the API serves them), used by the service proxy:

    listeners_of(service, pods, lb_ip) -> {(address, port): [(pod IP, target port), ...]}

The endpoints controller's rules, for what a userspace proxy needs: pods in the Service's
namespace whose labels include every selector pair, with a pod IP, not being deleted, Ready
(or any phase-Running pod with ``publishNotReadyAddresses``); ``targetPort`` a number, or a
name looked up in each pod's container ports (a pod without that port name is skipped), or
absent (the Service port). Only TCP ports; a Service without a selector, headless or
ExternalName gets no listener.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Backend = tuple[str, int]
ListenKey = tuple[str, int]


def proxied(service: Mapping[str, Any]) -> bool:
    """Does the proxy serve this Service (a selector, a cluster IP, not ExternalName)?"""
    spec = service.get("spec") or {}
    cluster_ip = str(spec.get("clusterIP") or "")
    return bool(spec.get("selector")) and cluster_ip not in ("", "None") \
        and spec.get("type", "ClusterIP") != "ExternalName"


def is_load_balancer(service: Mapping[str, Any]) -> bool:
    return (service.get("spec") or {}).get("type") == "LoadBalancer"


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_serving(pod: Mapping[str, Any], publish_not_ready: bool = False) -> bool:
    """A pod that receives traffic: an IP, not deleted, Ready (or running, when not-ready pods are published)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp") or not status.get("podIP"):
        return False
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if publish_not_ready:
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def target_port(service_port: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    """The pod's port for ``service_port``: a number, a named container port, or the Service port."""
    target = service_port.get("targetPort")
    if target is None or target == "":
        return int(service_port["port"])
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == "TCP":
                return int(port["containerPort"])
    return None


def service_addresses(service: Mapping[str, Any], lb_ip: str | None = None) -> list[str]:
    """The addresses the proxy listens on for ``service``: its cluster IPs, and its load-balancer IP."""
    spec = service.get("spec") or {}
    addresses = [str(a) for a in spec.get("clusterIPs") or [spec.get("clusterIP")] if a and a != "None"]
    if lb_ip and lb_ip not in addresses:
        addresses.append(lb_ip)
    return addresses


def listeners_of(service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
                 lb_ip: str | None = None) -> dict[ListenKey, list[Backend]]:
    """Each (address, port) to listen on for ``service`` -> its backends (sorted: a stable round robin)."""
    if not proxied(service):
        return {}
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
    publish = bool(spec.get("publishNotReadyAddresses"))
    serving = [p for p in pods if (p.get("metadata") or {}).get("namespace", "default") == namespace
               and selects(selector, (p.get("metadata") or {}).get("labels") or {}) and pod_serving(p, publish)]
    out: dict[ListenKey, list[Backend]] = {}
    for port in spec.get("ports") or []:
        if port.get("protocol", "TCP") != "TCP" or not port.get("port"):
            continue
        backends: set[Backend] = set()
        for pod in serving:
            number = target_port(port, pod)
            if number is not None:
                backends.add((str(pod["status"]["podIP"]), number))
        for address in service_addresses(service, lb_ip):
            out[(address, int(port["port"]))] = sorted(backends)
    return out
