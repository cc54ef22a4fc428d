"""The one table of Kubernetes kinds infergate reads or writes: group, version, plural, kind, scope.

The kinds infergate serves come from :mod:`infergate.api.registry` (its storage version);
the built-ins it only uses as a client (EndpointSlice, Deployment, ConfigMap, Lease...) are
listed here. Every other module names a kind through this table, never by a local tuple.

The named constants (``PODS``, ``GA_POOLS``, ``LEASES``...) are written out, so that a client
(the EPP) does not import the registry's pydantic models, about a third of its start (issue 17
defect 8); a test checks each against the registry. :func:`find`, :func:`get` and :func:`of`
answer from them first and import the registry for any other kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final


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
    # imported on the first lookup of a kind not named below: the models are heavy (module docstring)
    from infergate.api import registry

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

@cache
def _table() -> tuple[tuple[Kind, ...], Mapping[tuple[str, str], tuple[Kind, ...]]]:
    every = tuple(dict.fromkeys(_served() + _BUILTIN_CLIENT_KINDS))  # a kind both lists name: once
    return every, {gk: tuple(k for k in every if k.gk == gk) for gk in dict.fromkeys(k.gk for k in every)}


def all_kinds() -> tuple[Kind, ...]:
    """Every kind: the served ones (from the registry), then the built-ins used as a client."""
    return _table()[0]


def find(group: str, kind: str, version: str | None = None) -> Kind | None:
    """The kind in ``group`` (at ``version`` when given, else its first listed version), or None."""
    named = _NAMED.get((group, kind))
    if named is not None and (version is None or named.version == version):
        return named
    for k in _table()[1].get((group, kind), ()):
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

GATEWAY_CLASSES: Final = Kind(GATEWAY_GROUP, "v1", "gatewayclasses", "GatewayClass", False)
GATEWAYS: Final = Kind(GATEWAY_GROUP, "v1", "gateways", "Gateway")
HTTPROUTES: Final = Kind(GATEWAY_GROUP, "v1", "httproutes", "HTTPRoute")
REFERENCE_GRANTS: Final = Kind(GATEWAY_GROUP, "v1beta1", "referencegrants", "ReferenceGrant")
GA_POOLS: Final = Kind(GA_GROUP, "v1", "inferencepools", "InferencePool")
PREVIEW_POOLS: Final = Kind(PREVIEW_GROUP, "v1alpha2", "inferencepools", "InferencePool")
PREVIEW_MODELS: Final = Kind(PREVIEW_GROUP, "v1alpha2", "inferencemodels", "InferenceModel")
OBJECTIVES: Final = Kind(PREVIEW_GROUP, "v1alpha2", "inferenceobjectives", "InferenceObjective")
MODEL_REWRITES: Final = Kind(PREVIEW_GROUP, "v1alpha2", "inferencemodelrewrites", "InferenceModelRewrite")
PODS: Final = Kind("", "v1", "pods", "Pod")
SERVICES: Final = Kind("", "v1", "services", "Service")
NAMESPACES: Final = Kind("", "v1", "namespaces", "Namespace", False)
CONFIGMAPS: Final = Kind("", "v1", "configmaps", "ConfigMap")
SECRETS: Final = Kind("", "v1", "secrets", "Secret")
SERVICE_ACCOUNTS: Final = Kind("", "v1", "serviceaccounts", "ServiceAccount")
ENDPOINT_SLICES: Final = Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
DEPLOYMENTS: Final = Kind("apps", "v1", "deployments", "Deployment")
REPLICA_SETS: Final = Kind("apps", "v1", "replicasets", "ReplicaSet")
POD_DISRUPTION_BUDGETS: Final = Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
LEASES: Final = Kind("coordination.k8s.io", "v1", "leases", "Lease")
ROLES: Final = Kind("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS: Final = Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
CRDS: Final = Kind("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False)
POOLS: Final = {GA_GROUP: GA_POOLS, PREVIEW_GROUP: PREVIEW_POOLS}
# what the EPP looks up by group at start: answered without the registry too
LLMD_OBJECTIVES: Final = Kind("llm-d.ai", "v1alpha2", "inferenceobjectives", "InferenceObjective")
LLMD_MODEL_REWRITES: Final = Kind("llm-d.ai", "v1alpha2", "inferencemodelrewrites", "InferenceModelRewrite")

NAMED: Final[tuple[Kind, ...]] = (
    GATEWAY_CLASSES, GATEWAYS, HTTPROUTES, REFERENCE_GRANTS, GA_POOLS, PREVIEW_POOLS, PREVIEW_MODELS, OBJECTIVES,
    MODEL_REWRITES, PODS, SERVICES, NAMESPACES, CONFIGMAPS, SECRETS, SERVICE_ACCOUNTS, ENDPOINT_SLICES, DEPLOYMENTS,
    REPLICA_SETS, POD_DISRUPTION_BUDGETS, LEASES, ROLES, ROLE_BINDINGS, CRDS, LLMD_OBJECTIVES, LLMD_MODEL_REWRITES,
)
_NAMED: Final[Mapping[tuple[str, str], Kind]] = {k.gk: k for k in NAMED}
