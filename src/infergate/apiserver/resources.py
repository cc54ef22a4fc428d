"""Resource types the embedded API server serves: built-in kinds and CRD-defined kinds.

Every object is stored version-independently under (group, plural resource, namespace,
name). A :class:`ServedResource` says how a resource is addressed (group, served versions in
preference order, plural, scope), what discovery advertises (kind, short names,
categories, subresources) and how it prints (printer columns, for custom resources).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class PrinterColumn:
    """One column of a server-side Table (a CRD's ``additionalPrinterColumns`` entry)."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class ScalePaths:
    """Where the ``scale`` subresource reads and writes replicas (JSON paths like ``.spec.replicas``)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".status.selector"


@dataclass(frozen=True, eq=False)
class ServedResource:
    """A resource the server serves: how it is addressed, advertised and printed
    (distinct from ``api.registry.ResourceType``, infergate's own typed API kinds)."""

    group: str
    resource: str
    kind: str
    namespaced: bool
    versions: tuple[str, ...]
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    crd_name: str | None = None
    # per served version, for custom resources: printer columns and the openAPIV3Schema
    columns: dict[str, tuple[PrinterColumn, ...]] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the scale subresource: (spec replicas path, status replicas path, label selector path)
    scale: ScalePaths | None = None
    # create-only review kinds (SelfSubjectAccessReview): answered, never stored
    review: bool = False

    @property
    def preferred_version(self) -> str:
        return self.versions[0]

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def group_resource(self) -> str:
        """``plural.group`` as Kubernetes error messages name a resource (``plural`` for core)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def api_version(self, version: str | None = None) -> str:
        version = version or self.preferred_version
        return f"{self.group}/{version}" if self.group else version


_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority_key(version: str) -> tuple[int, int, int, str]:
    """Sort key giving Kubernetes' version priority: GA > beta > alpha, higher numbers first."""
    match = _VERSION_RE.match(version)
    if not match:
        return (3, 0, 0, version)
    major = int(match.group(1))
    level = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    minor = int(match.group(3) or 0)
    return (level, -major, -minor, "")


def sort_versions(versions: list[str]) -> tuple[str, ...]:
    return tuple(sorted(versions, key=version_priority_key))


def _builtin(group: str, version: str, resource: str, kind: str, *, namespaced: bool = True,
             short: tuple[str, ...] = (), categories: tuple[str, ...] = (),
             status: bool = False, scale: bool = False) -> ServedResource:
    subresources = ({"status"} if status else set()) | ({"scale"} if scale else set())
    return ServedResource(
        group=group, resource=resource, kind=kind, namespaced=namespaced, versions=(version,),
        singular=kind.lower(), short_names=short, categories=categories, subresources=frozenset(subresources),
        scale=ScalePaths(label_selector=".spec.selector") if scale else None,
    )


ALL = ("all",)

BUILTIN_TYPES: tuple[ServedResource, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",), status=True),
    _builtin("", "v1", "pods", "Pod", short=("po",), categories=ALL, status=True),
    _builtin("", "v1", "services", "Service", short=("svc",), categories=ALL, status=True),
    _builtin("", "v1", "endpoints", "Endpoints", short=("ep",)),
    _builtin("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _builtin("", "v1", "events", "Event", short=("ev",)),
    _builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), status=True),
    _builtin("", "v1", "nodes", "Node", namespaced=False, short=("no",), status=True),
    _builtin("apps", "v1", "deployments", "Deployment", short=("deploy",), categories=ALL, status=True, scale=True),
    _builtin("apps", "v1", "replicasets", "ReplicaSet", short=("rs",), categories=ALL, status=True, scale=True),
    _builtin("apps", "v1", "statefulsets", "StatefulSet", short=("sts",), categories=ALL, status=True, scale=True),
    _builtin("apps", "v1", "daemonsets", "DaemonSet", short=("ds",), categories=ALL, status=True),
    _builtin("batch", "v1", "jobs", "Job", categories=ALL, status=True),
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
             namespaced=False),
    _builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True),
    _builtin("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short=("hpa",),
             categories=ALL, status=True),
    _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, short=("crd", "crds"), status=True),
    ServedResource(group="authorization.k8s.io", resource="selfsubjectaccessreviews", kind="SelfSubjectAccessReview",
                 namespaced=False, versions=("v1",), singular="selfsubjectaccessreview", review=True),
)

CRD_GROUP_RESOURCE = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")


class NamesConflict(ValueError):
    """A CRD's names clash with a resource that is already served."""


def served_resource_from_crd(crd: dict[str, Any]) -> ServedResource:
    """The resource type a CustomResourceDefinition defines (its served versions only)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served: list[str] = []
    columns: dict[str, tuple[PrinterColumn, ...]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    subresources: set[str] = set()
    scale: ScalePaths | None = None
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        name = str(version["name"])
        served.append(name)
        columns[name] = tuple(
            PrinterColumn(
                name=str(col.get("name", "")), type=str(col.get("type", "string")),
                json_path=str(col.get("jsonPath", "")), description=str(col.get("description", "")),
                priority=int(col.get("priority", 0) or 0), format=str(col.get("format", "") or ""),
            )
            for col in version.get("additionalPrinterColumns") or []
        )
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if isinstance(schema, dict):
            schemas[name] = schema
        subresources.update((version.get("subresources") or {}).keys())
        scale_spec = (version.get("subresources") or {}).get("scale")
        if isinstance(scale_spec, dict) and scale is None:
            scale = ScalePaths(str(scale_spec.get("specReplicasPath", ".spec.replicas")),
                               str(scale_spec.get("statusReplicasPath", ".status.replicas")),
                               scale_spec.get("labelSelectorPath"))
    plural = str(names.get("plural", ""))
    kind = str(names.get("kind", ""))
    return ServedResource(
        group=str(spec.get("group", "")), resource=plural, kind=kind,
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        versions=sort_versions(served), singular=str(names.get("singular") or kind.lower()),
        short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
        subresources=frozenset(subresources), crd_name=str((crd.get("metadata") or {}).get("name", "")),
        columns=columns, schemas=schemas, scale=scale,
    )


class ResourceRegistry:
    """The resource types being served: the built-ins plus one per established CRD."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str], ServedResource] = {}
        for rtype in BUILTIN_TYPES:
            self._types[(rtype.group, rtype.resource)] = rtype
        self.generation = 0  # bumped on every change; used as the OpenAPI/discovery hash

    def get(self, group: str, resource: str) -> ServedResource | None:
        return self._types.get((group, resource))

    def lookup(self, group: str, version: str, resource: str) -> ServedResource | None:
        rtype = self._types.get((group, resource))
        if rtype is None or version not in rtype.versions:
            return None
        return rtype

    def by_kind(self, group: str, kind: str) -> ServedResource | None:
        for rtype in self._types.values():
            if rtype.group == group and rtype.kind == kind:
                return rtype
        return None

    def all(self) -> list[ServedResource]:
        return list(self._types.values())

    def custom(self) -> list[ServedResource]:
        return [t for t in self._types.values() if t.crd_name]

    def groups(self) -> dict[str, tuple[str, ...]]:
        """group -> its served versions, preferred first (core group ``""`` included)."""
        versions: dict[str, set[str]] = {}
        for rtype in self._types.values():
            versions.setdefault(rtype.group, set()).update(rtype.versions)
        return {group: sort_versions(list(vs)) for group, vs in versions.items()}

    def check_names(self, rtype: ServedResource) -> str | None:
        """Why a CRD's names cannot be accepted, or None when they can."""
        existing = self._types.get((rtype.group, rtype.resource))
        if existing is not None and existing.crd_name != rtype.crd_name:
            return f"{rtype.group_resource} is already served"
        for other in self._types.values():
            if other.group != rtype.group or other.crd_name == rtype.crd_name:
                continue
            if other.kind == rtype.kind:
                return f"kind {rtype.kind} is already in use in group {rtype.group}"
            if set(other.short_names) & set(rtype.short_names):
                return f"short names {sorted(set(other.short_names) & set(rtype.short_names))} are already in use"
        return None

    def add_subresource(self, group: str, resource: str, name: str) -> None:
        """Serve an extra subresource (e.g. ``pods/log`` from the local runtime)."""
        rtype = self._types.get((group, resource))
        if rtype is None:
            raise KeyError(f"no resource {resource} in group {group!r}")
        self._types[(group, resource)] = replace(rtype, subresources=rtype.subresources | {name})
        self.generation += 1

    def register(self, rtype: ServedResource) -> None:
        # a CRD may change its plural: drop the old entry of the same CRD
        for key, other in list(self._types.items()):
            if other.crd_name and other.crd_name == rtype.crd_name:
                del self._types[key]
        self._types[(rtype.group, rtype.resource)] = rtype
        self.generation += 1

    def unregister(self, crd_name: str) -> ServedResource | None:
        for key, other in list(self._types.items()):
            if other.crd_name == crd_name:
                del self._types[key]
                self.generation += 1
                return other
        return None
