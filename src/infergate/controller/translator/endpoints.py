"""Resolve Services and label selectors to endpoint addresses.

A Service resolves, in this order, to:
1. the ready endpoints of its EndpointSlices (label ``kubernetes.io/service-name``), when any
   slice exists;
2. else, when it has a selector, the Ready pods in its namespace matching the selector, on
   the ``targetPort`` of the chosen Service port (a number, or a container port name looked
   up in each pod; unset = the Service port);
3. else (no selector), its ``clusterIP`` on the Service port, when it has one (a Service
   whose endpoints are managed outside Kubernetes, e.g. an EPP process on the host in
   standalone mode with ``clusterIP: 127.0.0.1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infergate.controller.resources import CORE_GROUP, DISCOVERY_GROUP, ObservedObject
from infergate.controller.snapshot import Snapshot
from infergate.ir import Endpoint

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def pod_ready(pod: ObservedObject) -> bool:
    if pod.deleting:
        return False
    for cond in pod.status.get("conditions") or ():
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def pod_ips(pod: ObservedObject) -> tuple[str, ...]:
    ips = [str(entry.get("ip")) for entry in pod.status.get("podIPs") or () if entry.get("ip")]
    if not ips and pod.status.get("podIP"):
        ips = [str(pod.status["podIP"])]
    return tuple(ips[:1])  # one address per pod (the primary IP), as the EPP uses


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A map selector (all pairs must match). An empty selector matches nothing here."""
    return bool(selector) and all(labels.get(key) == str(value) for key, value in selector.items())


def ready_pods(snapshot: Snapshot, namespace: str, selector: Mapping[str, Any]) -> tuple[ObservedObject, ...]:
    return tuple(
        pod
        for pod in snapshot.list(CORE_GROUP, "Pod", namespace)
        if selector_matches(selector, pod.labels) and pod_ready(pod) and pod_ips(pod)
    )


def pod_endpoints(snapshot: Snapshot, namespace: str, selector: Mapping[str, Any],
                  ports: tuple[int, ...]) -> tuple[Endpoint, ...]:
    found = {
        Endpoint(ip, port)
        for pod in ready_pods(snapshot, namespace, selector)
        for ip in pod_ips(pod)
        for port in ports
    }
    return tuple(sorted(found, key=lambda e: (_ip_key(e.address), e.port)))


def _ip_key(address: str) -> tuple[int, ...] | tuple[str]:
    parts = address.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return (address,)


@dataclass(frozen=True)
class ServiceLookup:
    """The outcome of resolving (Service, port): endpoints, or why it failed."""

    service: ObservedObject | None
    port: Mapping[str, Any] | None
    endpoints: tuple[Endpoint, ...]
    error: str | None  # None = resolved (possibly to zero endpoints)


def find_service_port(service: ObservedObject, port: int) -> Mapping[str, Any] | None:
    for entry in service.spec.get("ports") or ():
        if entry.get("port") == port:
            return dict(entry)
    return None


def resolve_service(snapshot: Snapshot, namespace: str, name: str, port: int | None) -> ServiceLookup:
    service = snapshot.get(CORE_GROUP, "Service", namespace, name)
    if service is None:
        return ServiceLookup(None, None, (), f"Service {namespace}/{name} not found")
    if service.spec.get("type") == "ExternalName":
        return ServiceLookup(service, None, (), f"Service {namespace}/{name} is of type ExternalName, which is not supported")
    if port is None:
        return ServiceLookup(service, None, (), "a port is required to reference a Service")
    service_port = find_service_port(service, port)
    if service_port is None:
        return ServiceLookup(service, None, (), f"Service {namespace}/{name} has no port {port}")
    return ServiceLookup(service, service_port, service_endpoints(snapshot, service, service_port), None)


def service_endpoints(snapshot: Snapshot, service: ObservedObject, service_port: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    slices = [
        s for s in snapshot.list(DISCOVERY_GROUP, "EndpointSlice", service.namespace)
        if s.labels.get(SERVICE_NAME_LABEL) == service.name
    ]
    if slices:
        return _slice_endpoints(slices, service_port)
    selector = service.spec.get("selector") or {}
    if selector:
        found: set[Endpoint] = set()
        for pod in ready_pods(snapshot, service.namespace, selector):
            target = _target_port(pod, service_port)
            if target is None:
                continue
            found.update(Endpoint(ip, target) for ip in pod_ips(pod))
        return tuple(sorted(found, key=lambda e: (_ip_key(e.address), e.port)))
    cluster_ip = service.spec.get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip and cluster_ip != "None":
        return (Endpoint(cluster_ip, int(service_port["port"])),)
    return ()


def _target_port(pod: ObservedObject, service_port: Mapping[str, Any]) -> int | None:
    target = service_port.get("targetPort")
    if target is None:
        return int(service_port["port"])
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in pod.spec.get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == target and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None


def _slice_endpoints(slices: list[ObservedObject], service_port: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    wanted = service_port.get("name") or ""
    found: set[Endpoint] = set()
    for slice_ in slices:
        ports = [p for p in slice_.body.get("ports") or () if (p.get("name") or "") == wanted]
        if not ports or not isinstance(ports[0].get("port"), int):
            continue
        port = int(ports[0]["port"])
        for endpoint in slice_.body.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found.update(Endpoint(str(address), port) for address in endpoint.get("addresses") or ())
    return tuple(sorted(found, key=lambda e: (_ip_key(e.address), e.port)))
