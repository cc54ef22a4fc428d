"""Kubernetes objects (plain dicts, camelCase as on the wire) -> datastore values.

Shared by both sources, so a static file may hold the same manifests a cluster would.
Errors name the field path and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from infergate.epp.datastore import (
    GA_GROUP,
    PREVIEW_GROUP,
    Criticality,
    InferenceModelInfo,
    Objective,
    PodInfo,
    PoolInfo,
    TargetModel,
)
from infergate.epp.sources.base import SourceError

CRITICALITIES = ("Critical", "Standard", "Sheddable")


def _map(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SourceError(f"{path}: must be an object, got {type(value).__name__}")
    return value


def _str_map(value: Any, path: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, item in _map(value, path).items():
        if not isinstance(item, str | int | float | bool):
            raise SourceError(f"{path}.{key}: must be a string")
        result[str(key)] = str(item)
    return result


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SourceError(f"{path}: must be a port number 1..65535, got {value!r}")
    return value


def group_of(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def pool_from_object(obj: Mapping[str, Any], path: str = "pool") -> PoolInfo:
    """An InferencePool of either generation (``inference.networking.k8s.io/v1`` or x-k8s v1alpha2)."""
    api_version = str(obj.get("apiVersion", f"{GA_GROUP}/v1"))
    group = group_of(api_version)
    if group not in (GA_GROUP, PREVIEW_GROUP):
        raise SourceError(f"{path}.apiVersion: unsupported InferencePool group {group!r}")
    meta = _map(obj.get("metadata"), f"{path}.metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise SourceError(f"{path}.metadata.name: required")
    namespace = str(meta.get("namespace") or "default")
    spec = _map(obj.get("spec"), f"{path}.spec")
    if group == GA_GROUP:
        selector = _str_map(_map(spec.get("selector"), f"{path}.spec.selector").get("matchLabels"),
                            f"{path}.spec.selector.matchLabels")
        raw_ports = spec.get("targetPorts")
        if not isinstance(raw_ports, list) or not raw_ports:
            raise SourceError(f"{path}.spec.targetPorts: required, a non-empty list")
        ports = tuple(
            _port(_map(item, f"{path}.spec.targetPorts[{i}]").get("number"), f"{path}.spec.targetPorts[{i}].number")
            for i, item in enumerate(raw_ports)
        )
    else:
        selector = _str_map(spec.get("selector"), f"{path}.spec.selector")
        ports = (_port(spec.get("targetPortNumber"), f"{path}.spec.targetPortNumber"),)
    if not selector:
        raise SourceError(f"{path}.spec.selector: required, at least one label")
    return PoolInfo(name=name, namespace=namespace, group=group, selector=selector, target_ports=ports,
                    resource_version=str(meta.get("resourceVersion") or ""))


def pod_from_object(obj: Mapping[str, Any]) -> PodInfo:
    """A Pod; ready iff condition Ready=True and no deletionTimestamp (upstream's podutil.IsPodReady)."""
    meta = _map(obj.get("metadata"), "metadata")
    status = _map(obj.get("status"), "status")
    conditions = status.get("conditions") or []
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )
    if meta.get("deletionTimestamp"):
        ready = False
    return PodInfo(
        name=str(meta.get("name", "")),
        address=str(status.get("podIP") or ""),
        labels=_str_map(meta.get("labels"), "metadata.labels"),
        ready=ready,
    )


def objective_from_object(obj: Mapping[str, Any], pool_name: str, pool_group: str) -> Objective | None:
    """An InferenceObjective, or None when its poolRef (name AND group) is not this pool."""
    meta = _map(obj.get("metadata"), "metadata")
    spec = _map(obj.get("spec"), "spec")
    ref = _map(spec.get("poolRef"), "spec.poolRef")
    if ref.get("name") != pool_name or (ref.get("group") or GA_GROUP) != pool_group:
        return None
    priority = spec.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise SourceError(f"spec.priority: must be an integer, got {priority!r}")
    return Objective(name=str(meta.get("name", "")), priority=priority)


def model_from_object(obj: Mapping[str, Any], pool_name: str) -> InferenceModelInfo | None:
    """A preview InferenceModel, or None when ``poolRef.name`` is another pool (v0.3.0 matches the name only)."""
    meta = _map(obj.get("metadata"), "metadata")
    spec = _map(obj.get("spec"), "spec")
    ref = _map(spec.get("poolRef"), "spec.poolRef")
    if ref.get("name") != pool_name:
        return None
    model_name = spec.get("modelName")
    if not isinstance(model_name, str) or not model_name:
        raise SourceError("spec.modelName: required")
    criticality = spec.get("criticality")
    if criticality is not None and criticality not in CRITICALITIES:
        raise SourceError(f"spec.criticality: must be one of {', '.join(CRITICALITIES)}, got {criticality!r}")
    targets: list[TargetModel] = []
    for i, item in enumerate(spec.get("targetModels") or []):
        target = _map(item, f"spec.targetModels[{i}]")
        name = target.get("name")
        if not isinstance(name, str) or not name:
            raise SourceError(f"spec.targetModels[{i}].name: required")
        weight = target.get("weight")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int) or weight < 1):
            raise SourceError(f"spec.targetModels[{i}].weight: must be an integer >= 1, got {weight!r}")
        targets.append(TargetModel(name, weight))
    if targets and len({t.weight is None for t in targets}) > 1:
        raise SourceError("spec.targetModels: Weights should be set for all models, or none of the models.")
    return InferenceModelInfo(
        name=str(meta.get("name", "")),
        model_name=model_name,
        criticality=cast(Criticality | None, criticality),
        target_models=tuple(targets),
        creation_timestamp=str(meta.get("creationTimestamp") or ""),
    )
