"""The Kubernetes objects the local runtime writes: Pods, their status, ReplicaSets, Deployment status."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from infergate.apiserver.runtime.process import ContainerState
from infergate.apiserver.runtime.spec import _ALPHABET

RUNTIME_ANNOTATION = "infergate.io/local-runtime"
DEPLOYMENT_ANNOTATION = "infergate.io/deployment"
HASH_LABEL = "pod-template-hash"


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def owner_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def replica_set(deployment: Mapping[str, Any], name: str, pod_hash: str, replicas: int) -> dict[str, Any]:
    template = copy.deepcopy(deployment["spec"].get("template") or {})
    meta = template.setdefault("metadata", {})
    meta.setdefault("labels", {})[HASH_LABEL] = pod_hash
    selector = copy.deepcopy(deployment["spec"].get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
    labels = dict((deployment["spec"].get("template") or {}).get("metadata", {}).get("labels") or {})
    labels[HASH_LABEL] = pod_hash
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": deployment["metadata"]["namespace"], "labels": labels,
                     "annotations": {RUNTIME_ANNOTATION: "true",
                                     DEPLOYMENT_ANNOTATION: deployment["metadata"]["name"]},
                     "ownerReferences": [owner_reference(deployment)]},
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    }


def pod_object(deployment: Mapping[str, Any], rs: Mapping[str, Any], name: str, pod_hash: str,
               node_name: str) -> dict[str, Any]:
    template = deployment["spec"].get("template") or {}
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels[HASH_LABEL] = pod_hash
    annotations = dict(tmeta.get("annotations") or {})
    annotations[RUNTIME_ANNOTATION] = "true"
    annotations[DEPLOYMENT_ANNOTATION] = deployment["metadata"]["name"]
    spec = copy.deepcopy(template.get("spec") or {})
    spec["nodeName"] = node_name
    spec.setdefault("serviceAccountName", "default")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": deployment["metadata"]["namespace"], "labels": labels,
                     "annotations": annotations, "ownerReferences": [owner_reference(rs)]},
        "spec": spec,
    }


def _condition(kind: str, ok: bool, since: str, reason: str | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                            "lastTransitionTime": since}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def container_status(state: ContainerState, container: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of ``status.containerStatuses`` as the kubelet writes it."""
    status: dict[str, Any] = {
        "name": container.get("name", "main"), "image": container.get("image", ""), "imageID": "",
        "containerID": f"local://{state.pid}" if state.pid else "", "ready": state.ready,
        "started": state.started if state.running_since is not None else False,
        "restartCount": state.restart_count,
    }
    if state.completed:
        status["ready"] = True  # a completed init container, as the kubelet reports it
        status["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": state.started_at,
                                          "finishedAt": state.last_finished_at}}
        return status
    if state.running_since is not None:
        status["state"] = {"running": {"startedAt": state.running_since}}
    else:
        status["state"] = {"waiting": {"reason": state.waiting_reason or "ContainerCreating"}}
    if state.last_exit_code is not None:
        status["lastState"] = {"terminated": {
            "exitCode": state.last_exit_code, "reason": "Completed" if state.last_exit_code == 0 else "Error",
            "finishedAt": state.last_finished_at, "startedAt": state.started_at}}
    return status


def pod_phase(states: Sequence[ContainerState]) -> str:
    """``Running`` once every container has started (whatever it does since), else ``Pending``;
    ``Succeeded`` once all were stopped for good."""
    if states and all(s.phase == "Succeeded" for s in states):
        return "Succeeded"
    return "Running" if states and all(s.phase in ("Running", "Succeeded") for s in states) else "Pending"


def pod_status(containers: Sequence[tuple[Mapping[str, Any], ContainerState]], ip: str, created: str,
               ready_since: str,
               init_containers: Sequence[tuple[Mapping[str, Any], ContainerState]] = ()) -> dict[str, Any]:
    """A Pod ``status`` as the kubelet writes it: one ``containerStatuses`` entry per container
    (in ``spec.containers`` order); the pod is Ready when every container is. With init
    containers: ``initContainerStatuses``, and ``Initialized`` (and phase ``Running``) only once
    every one of them has completed."""
    states = [state for _, state in containers]
    ready = bool(states) and all(s.ready for s in states)
    unready = [str(c.get("name", "main")) for c, s in containers if not s.ready]
    incomplete = [str(c.get("name", "main")) for c, s in init_containers if not s.completed]
    initialized = _condition("Initialized", not incomplete, created, "ContainersNotInitialized")
    if incomplete:
        initialized["message"] = f"containers with incomplete status: [{' '.join(incomplete)}]"

    def condition(kind: str) -> dict[str, Any]:
        cond = _condition(kind, ready, ready_since, "ContainersNotReady")
        if not ready:
            cond["message"] = f"containers with unready status: [{' '.join(unready)}]"
        return cond

    status: dict[str, Any] = {
        "phase": "Pending" if incomplete else pod_phase(states),
        "conditions": [
            _condition("PodScheduled", True, created),
            initialized,
            condition("ContainersReady"),
            condition("Ready"),
        ],
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip, "podIPs": [{"ip": ip}], "startTime": created,
        "qosClass": "BestEffort",
        "containerStatuses": [container_status(state, container) for container, state in containers],
    }
    if init_containers:
        status["initContainerStatuses"] = [container_status(state, container) for container, state in init_containers]
    return status


def _max_unavailable(deployment: Mapping[str, Any], desired: int) -> int:
    strategy = deployment["spec"].get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return desired
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return desired * int(value[:-1]) // 100
    return int(value)


def deployment_status(deployment: Mapping[str, Any], pods: Iterable[tuple[str, bool]], current_hash: str,
                      previous: Mapping[str, Any], now: str) -> dict[str, Any]:
    """``status`` of a Deployment from its pods ((pod-template-hash, ready) pairs)."""
    pairs = list(pods)
    desired = int(deployment["spec"].get("replicas", 1))
    ready = sum(1 for _, r in pairs if r)
    updated = sum(1 for h, _ in pairs if h == current_hash)
    available = ready >= desired - _max_unavailable(deployment, desired)
    complete = updated == desired and len(pairs) == desired and ready == desired
    old = {c.get("type"): c for c in previous.get("conditions") or []}

    def cond(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        status = "True" if ok else "False"
        before = old.get(kind) or {}
        since = before.get("lastTransitionTime") if before.get("status") == status else now
        updated_at = before.get("lastUpdateTime") if before.get("reason") == reason and before.get(
            "status") == status else now
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": since or now, "lastUpdateTime": updated_at or now}

    name = deployment["metadata"]["name"]
    status: dict[str, Any] = {
        "observedGeneration": int(deployment["metadata"].get("generation", 1)),
        "replicas": len(pairs), "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready,
        "unavailableReplicas": max(desired - ready, 0),
        "conditions": [
            cond("Available", available, "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if available
                 else "Deployment does not have minimum availability."),
            cond("Progressing", True, "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                 f'ReplicaSet "{name}-{current_hash}" has successfully progressed.' if complete
                 else f'ReplicaSet "{name}-{current_hash}" is progressing.'),
        ],
    }
    for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "unavailableReplicas"):
        if status[key] == 0:
            del status[key]  # omitted when zero, as the real API server's Go types do
    return status
