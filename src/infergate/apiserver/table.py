"""Server-side Table output (``meta.k8s.io/v1`` Table), as kubectl ``get`` asks for it.

Custom resources print their CRD's ``additionalPrinterColumns`` (first JSONPath match,
typed by the column type, ``date`` as a human duration). Built-in kinds get the columns
the real API server prints for them (Pods: READY/STATUS/RESTARTS, Services: TYPE/
CLUSTER-IP/EXTERNAL-IP/PORT(S), Deployments: READY/UP-TO-DATE/AVAILABLE, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from infergate.apiserver.jsonpath import JSONPathError, evaluate
from infergate.apiserver.resources import PrinterColumn, ServedResource

Column = dict[str, Any]
Cells = list[Any]


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration`` ("5s", "3m20s", "2d3h", "1y20d")."""
    if seconds < -1:
        return "<invalid>"
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{hours // (24 * 365)}y"


def age(timestamp: Any, now: datetime | None = None) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - then).total_seconds())


def _col(name: str, type_: str = "string", priority: int = 0, fmt: str = "", description: str = "") -> Column:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


NAME_COLUMN = _col("Name", fmt="name", description="Name must be unique within a namespace.")
AGE_COLUMN = _col("Age", "date", description="CreationTimestamp of the object.")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _none(value: Any) -> Any:
    return value if value not in (None, "", []) else "<none>"


# ------------------------------------------------------------------- built-in columns

def _pod(obj: dict[str, Any]) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or []) or len(statuses)
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated.get("reason") and reason not in ("Succeeded",):
            reason = terminated["reason"]
    if _meta(obj).get("deletionTimestamp"):
        reason = "Terminating"
    return [f"{ready}/{total}", reason, restarts, age(_meta(obj).get("creationTimestamp")),
            _none(status.get("podIP")), _none(spec.get("nodeName")), _none(status.get("nominatedNodeName")),
            _none(",".join(g.get("conditionType", "") for g in spec.get("readinessGates") or []))]


def _service(obj: dict[str, Any]) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    svc_type = spec.get("type") or "ClusterIP"
    external: list[str] = list(spec.get("externalIPs") or [])
    for ingress in (status.get("loadBalancer") or {}).get("ingress") or []:
        external.append(ingress.get("ip") or ingress.get("hostname") or "")
    if svc_type == "ExternalName":
        external = [spec.get("externalName") or ""]
    external_text = ",".join(e for e in external if e) or ("<pending>" if svc_type == "LoadBalancer" else "<none>")
    ports = []
    for port in spec.get("ports") or []:
        text = str(port.get("port", ""))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol') or 'TCP'}")
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [svc_type, _none(spec.get("clusterIP")), external_text, _none(",".join(ports)),
            age(_meta(obj).get("creationTimestamp")), _none(selector)]


def _containers(obj: dict[str, Any]) -> tuple[str, str]:
    pod_spec = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {})
    containers = pod_spec.get("containers") or []
    return (_none(",".join(c.get("name", "") for c in containers)),
            _none(",".join(c.get("image", "") for c in containers)))


def _selector_text(obj: dict[str, Any]) -> str:
    selector = (obj.get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels") or {}
    return str(_none(",".join(f"{k}={v}" for k, v in sorted(labels.items()))))


def _deployment(obj: dict[str, Any]) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    replicas = spec.get("replicas", 1)
    names, images = _containers(obj)
    return [f"{status.get('readyReplicas') or 0}/{replicas}", int(status.get("updatedReplicas") or 0),
            int(status.get("availableReplicas") or 0), age(_meta(obj).get("creationTimestamp")),
            names, images, _selector_text(obj)]


def _replicaset(obj: dict[str, Any]) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [int(spec.get("replicas", 1)), int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0),
            age(_meta(obj).get("creationTimestamp")), names, images, _selector_text(obj)]


def _namespace(obj: dict[str, Any]) -> Cells:
    return [(obj.get("status") or {}).get("phase") or "Active", age(_meta(obj).get("creationTimestamp"))]


def _configmap(obj: dict[str, Any]) -> Cells:
    return [len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), age(_meta(obj).get("creationTimestamp"))]


def _secret(obj: dict[str, Any]) -> Cells:
    return [obj.get("type") or "Opaque", len(obj.get("data") or {}), age(_meta(obj).get("creationTimestamp"))]


def _serviceaccount(obj: dict[str, Any]) -> Cells:
    return [len(obj.get("secrets") or []), age(_meta(obj).get("creationTimestamp"))]


def _crd(obj: dict[str, Any]) -> Cells:
    return [_meta(obj).get("creationTimestamp") or ""]


def _event(obj: dict[str, Any]) -> Cells:
    involved = obj.get("involvedObject") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    return [age(last), obj.get("type") or "", obj.get("reason") or "",
            f"{(involved.get('kind') or '').lower()}/{involved.get('name') or ''}", obj.get("message") or ""]


BuiltinPrinter = tuple[list[Column], Callable[[dict[str, Any]], Cells]]

_BUILTIN: dict[tuple[str, str], BuiltinPrinter] = {
    ("", "pods"): ([_col("Ready"), _col("Status"), _col("Restarts", "string"), AGE_COLUMN,
                    _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
                    _col("Readiness Gates", priority=1)], _pod),
    ("", "services"): ([_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), AGE_COLUMN,
                        _col("Selector", priority=1)], _service),
    ("apps", "deployments"): ([_col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"),
                               AGE_COLUMN, _col("Containers", priority=1), _col("Images", priority=1),
                               _col("Selector", priority=1)], _deployment),
    ("apps", "replicasets"): ([_col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"),
                               AGE_COLUMN, _col("Containers", priority=1), _col("Images", priority=1),
                               _col("Selector", priority=1)], _replicaset),
    ("", "namespaces"): ([_col("Status"), AGE_COLUMN], _namespace),
    ("", "configmaps"): ([_col("Data", "integer"), AGE_COLUMN], _configmap),
    ("", "secrets"): ([_col("Type"), _col("Data", "integer"), AGE_COLUMN], _secret),
    ("", "serviceaccounts"): ([_col("Secrets", "integer"), AGE_COLUMN], _serviceaccount),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ([_col("Created At", "date")], _crd),
    ("", "events"): ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")], _event),
}


# --------------------------------------------------------------------- CRD columns

def _cell(obj: dict[str, Any], column: PrinterColumn) -> Any:
    try:
        values = evaluate(obj, column.json_path)
    except JSONPathError:
        return None
    if not values:
        return None
    value = values[0]
    if column.type == "date":
        return age(value)
    if column.type == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            import json

            return str(json.dumps(value, separators=(",", ":")))
        return str(value)
    return value


def columns_for(rtype: ServedResource, version: str) -> tuple[list[Column], Callable[[dict[str, Any]], Cells]]:
    """Column definitions (Name first) and the function computing a row's cells."""
    if rtype.crd_name:
        printer = rtype.columns.get(version) or ()
        if not printer:
            return [NAME_COLUMN, AGE_COLUMN], lambda obj: [age(_meta(obj).get("creationTimestamp"))]
        defs = [_col(c.name, c.type, c.priority, c.format, c.description) for c in printer]
        return [NAME_COLUMN, *defs], lambda obj: [_cell(obj, c) for c in printer]
    builtin = _BUILTIN.get((rtype.group, rtype.resource))
    if builtin is not None:
        return [NAME_COLUMN, *builtin[0]], builtin[1]
    return [NAME_COLUMN, AGE_COLUMN], lambda obj: [age(_meta(obj).get("creationTimestamp"))]


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": _meta(obj)}


def to_table(rtype: ServedResource, version: str, objects: list[dict[str, Any]], resource_version: str,
             include_object: str = "Metadata", with_columns: bool = True) -> dict[str, Any]:
    definitions, cells = columns_for(rtype, version)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [_meta(obj).get("name", ""), *cells(obj)]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions if with_columns else [], "rows": rows}
