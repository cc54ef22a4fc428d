"""The objects of one Gateway's Envoy fleet, as pure functions of the Gateway and the knobs.

Per Gateway ``NS/NAME`` (all in ``NS``, owned by the Gateway so that deleting it removes them):

- Deployment ``infergate-NAME``: ``infergate envoy --xds-server ADDR --node-id NS/NAME``
  with the pod IP from the downward API, a readiness probe on Envoy's ``/ready``, a
  ``preStop`` pause and a termination grace period longer than the drain, and a rolling
  update that never goes below the desired replicas (``maxUnavailable: 0``);
- Service ``infergate-NAME``: the Gateway's listener ports (targetPort the same), type
  LoadBalancer unless the knobs say otherwise;
- PodDisruptionBudget ``infergate-NAME`` (``minAvailable: 1``) when replicas > 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infergate.controller.fleet.params import FleetParams

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "infergate"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "envoy"
CONTAINER = "envoy"
CONTROLLER_ANNOTATION = "infergate.io/controller"  # which controller owns the object (two may share a cluster)
NAME_PREFIX = "infergate-"
MAX_NAME = 63  # a Service name is a DNS label


@dataclass(frozen=True)
class FleetSettings:
    """What the controller's command line says about every fleet."""

    envoy_image: str
    xds_host: str  # the controller's xDS Service clusterIP (or DNS name)
    xds_port: int
    admin_port: int = 19001
    drain_seconds: float = 15.0
    pre_stop_seconds: int = 3  # endpoints drop the terminating pod before Envoy drains
    image_pull_policy: str | None = None
    controller_name: str = "infergate.io/gateway-controller"  # the GatewayClass controllerName served


@dataclass(frozen=True)
class GatewayInfo:
    """The part of a Gateway a fleet is built from."""

    namespace: str
    name: str
    uid: str
    ports: tuple[tuple[str, int], ...]  # (protocol, port) of its listeners, each port once

    @property
    def node_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, gateway: Mapping[str, Any]) -> GatewayInfo:
        meta = gateway.get("metadata") or {}
        ports: dict[int, str] = {}
        for listener in (gateway.get("spec") or {}).get("listeners") or ():
            port = int(listener.get("port") or 0)
            if 1 <= port <= 65535:
                ports.setdefault(port, str(listener.get("protocol") or "HTTP"))
        return cls(str(meta.get("namespace") or "default"), str(meta.get("name")), str(meta.get("uid") or ""),
                   tuple((protocol, port) for port, protocol in sorted(ports.items())))


def fleet_name(gateway_name: str) -> str:
    """``infergate-NAME``, shortened with a hash when longer than a DNS label."""
    name = NAME_PREFIX + gateway_name
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(gateway_name.encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - 9].rstrip('-.')}-{digest}"


def selector_labels(gateway: GatewayInfo) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, GATEWAY_NAME_LABEL: gateway.name, COMPONENT_LABEL: COMPONENT}


def owner_reference(gateway: GatewayInfo) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": gateway.name,
            "uid": gateway.uid, "controller": True, "blockOwnerDeletion": True}


def _metadata(gateway: GatewayInfo, settings: FleetSettings, annotations: Sequence[tuple[str, str]] = ()
              ) -> dict[str, Any]:
    return {"name": fleet_name(gateway.name), "namespace": gateway.namespace,
            "labels": selector_labels(gateway),
            "annotations": {**dict(annotations), CONTROLLER_ANNOTATION: settings.controller_name},
            "ownerReferences": [owner_reference(gateway)]}


def port_name(protocol: str, port: int) -> str:
    return f"{protocol.lower()}-{port}"


def envoy_command(gateway: GatewayInfo, params: FleetParams, settings: FleetSettings) -> list[str]:
    return ["infergate", "envoy", "--xds-server", f"{settings.xds_host}:{settings.xds_port}",
            "--node-id", gateway.node_id, "--admin-port", str(settings.admin_port),
            "--log-level", params.log_level, "--drain-seconds", f"{settings.drain_seconds:g}"]


def envoy_deployment(gateway: GatewayInfo, params: FleetParams, settings: FleetSettings) -> dict[str, Any]:
    labels = selector_labels(gateway)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.envoy_image,
        "command": envoy_command(gateway, params, settings),
        "env": [{"name": "INFERGATE_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [*({"name": port_name(protocol, port), "containerPort": port, "protocol": "TCP"}
                    for protocol, port in gateway.ports),
                  {"name": "admin", "containerPort": settings.admin_port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": settings.admin_port},
                           "periodSeconds": 2, "failureThreshold": 1, "successThreshold": 1, "timeoutSeconds": 1},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(settings.pre_stop_seconds)]}}},
    }
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    if params.resources:
        container["resources"] = dict(params.resources)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(gateway, settings),
        "spec": {
            "replicas": params.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # preStop pause + drain + a margin before the kubelet's SIGKILL
                    "terminationGracePeriodSeconds": settings.pre_stop_seconds + int(settings.drain_seconds) + 10,
                    "containers": [container],
                },
            },
        },
    }


def envoy_service(gateway: GatewayInfo, params: FleetParams, settings: FleetSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(gateway, settings, params.service_annotations),
        "spec": {
            "type": params.service_type,
            "selector": selector_labels(gateway),
            "ports": [{"name": port_name(protocol, port), "port": port, "targetPort": port, "protocol": "TCP"}
                      for protocol, port in gateway.ports],
        },
    }


def envoy_pdb(gateway: GatewayInfo, params: FleetParams, settings: FleetSettings) -> dict[str, Any] | None:
    """The PodDisruptionBudget, or None when there is one replica (a budget would block drains)."""
    if params.replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(gateway, settings),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": selector_labels(gateway)}},
    }


def desired_objects(gateway: GatewayInfo, params: FleetParams, settings: FleetSettings
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(Deployment, Service, PodDisruptionBudget or None) of ``gateway``'s fleet."""
    return (envoy_deployment(gateway, params, settings), envoy_service(gateway, params, settings),
            envoy_pdb(gateway, params, settings))
