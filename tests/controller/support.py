"""Test helpers: expand Deployments into Ready Pods, load upstream conformance inputs.

A manifest directory or a cluster without a pod runtime has Deployments but no Pods; these
helpers create the Pods a cluster would run (deterministic IPs), so translation can be
tested on upstream's conformance manifests as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infergate.controller.manifests import parse_manifests

GATEWAY_CLASS = "infergate"
CONTROLLER = "infergate.io/gateway-controller"


def gateway_class(name: str = GATEWAY_CLASS, controller: str = CONTROLLER) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name, "generation": 1}, "spec": {"controllerName": controller}}


def pods_for_deployments(objects: list[dict[str, Any]], network: str = "10.0") -> list[dict[str, Any]]:
    """Ready Pods for every Deployment (what a cluster would run), with deterministic IPs
    <network>.<deployment index>.<replica+1>, in sorted (namespace, name) order."""
    deployments = sorted(
        (o for o in objects if o.get("kind") == "Deployment"),
        key=lambda o: (o["metadata"].get("namespace", "default"), o["metadata"]["name"]),
    )
    pods = []
    for k, deploy in enumerate(deployments, start=1):
        template = deploy["spec"]["template"]
        for i in range(int(deploy["spec"].get("replicas", 1))):
            ip = f"{network}.{k}.{i + 1}"
            pods.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{deploy['metadata']['name']}-{i}",
                             "namespace": deploy["metadata"].get("namespace", "default"),
                             "labels": dict(template["metadata"].get("labels") or {})},
                "spec": {"containers": template["spec"]["containers"]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                           "conditions": [{"type": "Ready", "status": "True"}]},
            })
    return pods


def conformance_objects(reference_dir: Path, manifest: str) -> list[dict[str, Any]]:
    """base.yaml + one conformance manifest, as upstream's suite applies them, plus our
    GatewayClass and the Pods the Deployments would create."""
    folder = reference_dir / "gie-v1.0.0" / "conformance"
    objects: list[dict[str, Any]] = [gateway_class()]
    for name in ("base.yaml", manifest):
        text = (folder / name).read_text().replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS)
        objects.extend(parse_manifests(text, name))
    return objects + pods_for_deployments(objects)
