"""The one table of Kubernetes kinds infergate reads or writes: group, version, plural, kind, scope.

The kinds infergate serves come from :mod:`infergate.api.registry` (its storage version);
the built-ins it only uses as a client (EndpointSlice, Deployment, ConfigMap, Lease...) are
listed here. Every other module names a kind through this table, never by a local tuple.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from infergate.api import registry


@dataclass(frozen=True, order=True)
class Kind:
    """A served resource: group/version/plural, the kind it holds and whether it is namespaced."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gk(self) -> tuple[str, str]:
        return (self.group, self.kind)

    @property
    def qualified(self) -> str:
        """``plural.group`` as kubectl and CRD names spell it (``inferencepools.inference.networking.k8s.io``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path: of the collection (all namespaces when ``namespace`` is None), an object, a subresource."""
        return resource_path(self.api_version, self.plural, namespace if self.namespaced else None, name,
                             subresource)


def resource_path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """``/api/v1/namespaces/NS/pods/NAME/status`` and the like."""
    parts = ["/api/v1" if api_version == "v1" else f"/apis/{api_version}"]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def _served() -> tuple[Kind, ...]:
    seen: dict[tuple[str, str, str], Kind] = {}
    for t in registry.all_types():  # the x-k8s.io InferencePool is there twice (two releases, one GVK)
        seen.setdefault((t.group, t.version, t.kind), Kind(t.group, t.version, t.plural, t.kind, t.namespaced))
    return tuple(seen.values())


_BUILTIN_CLIENT_KINDS: Final = (
    Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Kind("apps", "v1", "deployments", "Deployment"),
    Kind("apps", "v1", "replicasets", "ReplicaSet"),
    Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Kind("", "v1", "configmaps", "ConfigMap"),
    Kind("", "v1", "secrets", "Secret"),
    Kind("", "v1", "serviceaccounts", "ServiceAccount"),
    Kind("coordination.k8s.io", "v1", "leases", "Lease"),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Kind("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    # GIE's preview InferenceModelRewrite: infergate does not serve it, the migration reads it where installed
    Kind("inference.networking.x-k8s.io", "v1alpha2", "inferencemodelrewrites", "InferenceModelRewrite"),
)

ALL: Final[tuple[Kind, ...]] = tuple(dict.fromkeys(_served() + _BUILTIN_CLIENT_KINDS))  # a kind both lists name: once
_BY_GK: Final[Mapping[tuple[str, str], tuple[Kind, ...]]] = {
    gk: tuple(k for k in ALL if k.gk == gk) for gk in dict.fromkeys(k.gk for k in ALL)
}


def find(group: str, kind: str, version: str | None = None) -> Kind | None:
    """The kind in ``group`` (at ``version`` when given, else its first listed version), or None."""
    for k in _BY_GK.get((group, kind), ()):
        if version is None or k.version == version:
            return k
    return None


def get(group: str, kind: str, version: str | None = None) -> Kind:
    found = find(group, kind, version)
    if found is None:
        raise KeyError(f"no kind {kind} in group {group or 'core'!r}" + (f" at {version}" if version else ""))
    return found


def of(obj: Mapping[str, Any]) -> Kind:
    """The kind of a manifest (by its apiVersion's group and its kind; any version of the group)."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    found = find(group, str(obj.get("kind", "")))
    if found is None:
        raise ValueError(f"no resource known for {obj.get('kind', '')} in group {group or 'core'!r}")
    return found


GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
GA_GROUP: Final = "inference.networking.k8s.io"
PREVIEW_GROUP: Final = "inference.networking.x-k8s.io"

GATEWAY_CLASSES: Final = get(GATEWAY_GROUP, "GatewayClass")
GATEWAYS: Final = get(GATEWAY_GROUP, "Gateway")
HTTPROUTES: Final = get(GATEWAY_GROUP, "HTTPRoute")
REFERENCE_GRANTS: Final = get(GATEWAY_GROUP, "ReferenceGrant")
GA_POOLS: Final = get(GA_GROUP, "InferencePool")
PREVIEW_POOLS: Final = get(PREVIEW_GROUP, "InferencePool")
PREVIEW_MODELS: Final = get(PREVIEW_GROUP, "InferenceModel")
OBJECTIVES: Final = get(PREVIEW_GROUP, "InferenceObjective")
MODEL_REWRITES: Final = get(PREVIEW_GROUP, "InferenceModelRewrite")
PODS: Final = get("", "Pod")
SERVICES: Final = get("", "Service")
NAMESPACES: Final = get("", "Namespace")
CONFIGMAPS: Final = get("", "ConfigMap")
SECRETS: Final = get("", "Secret")
SERVICE_ACCOUNTS: Final = get("", "ServiceAccount")
ENDPOINT_SLICES: Final = get("discovery.k8s.io", "EndpointSlice")
DEPLOYMENTS: Final = get("apps", "Deployment")
REPLICA_SETS: Final = get("apps", "ReplicaSet")
POD_DISRUPTION_BUDGETS: Final = get("policy", "PodDisruptionBudget")
LEASES: Final = get("coordination.k8s.io", "Lease")
ROLES: Final = get("rbac.authorization.k8s.io", "Role")
ROLE_BINDINGS: Final = get("rbac.authorization.k8s.io", "RoleBinding")
CRDS: Final = get("apiextensions.k8s.io", "CustomResourceDefinition")
POOLS: Final = {GA_GROUP: GA_POOLS, PREVIEW_GROUP: PREVIEW_POOLS}
