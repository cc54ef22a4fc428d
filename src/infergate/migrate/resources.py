"""The Kubernetes resources the migration reads and writes, always fully qualified.

Both InferencePool CRDs (``inferencepools.inference.networking.x-k8s.io`` and
``inferencepools.inference.networking.k8s.io``) serve the kind ``InferencePool``; the
migration never resolves a bare ``inferencepools`` (migration.md §9 case 1), it names the
group of every resource it touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from infergate.api.conversion.constants import GA_GROUP, GATEWAY_GROUP, PREVIEW_GROUP

Obj = dict[str, Any]


@dataclass(frozen=True, order=True)
class Resource:
    """A group/version/plural, with the kind it serves and whether it is namespaced."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``plural.group`` as kubectl and CRD names spell it (``inferencepools.inference.networking.k8s.io``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        return base


PREVIEW_POOLS: Final = Resource(PREVIEW_GROUP, "v1alpha2", "inferencepools", "InferencePool")
PREVIEW_MODELS: Final = Resource(PREVIEW_GROUP, "v1alpha2", "inferencemodels", "InferenceModel")
GA_POOLS: Final = Resource(GA_GROUP, "v1", "inferencepools", "InferencePool")
OBJECTIVES: Final = Resource(PREVIEW_GROUP, "v1alpha2", "inferenceobjectives", "InferenceObjective")
MODEL_REWRITES: Final = Resource(PREVIEW_GROUP, "v1alpha2", "inferencemodelrewrites", "InferenceModelRewrite")
HTTPROUTES: Final = Resource(GATEWAY_GROUP, "v1", "httproutes", "HTTPRoute")
GATEWAYS: Final = Resource(GATEWAY_GROUP, "v1", "gateways", "Gateway")
REFERENCE_GRANTS: Final = Resource(GATEWAY_GROUP, "v1beta1", "referencegrants", "ReferenceGrant")
CRDS: Final = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False)
NAMESPACES: Final = Resource("", "v1", "namespaces", "Namespace", False)
CONFIGMAPS: Final = Resource("", "v1", "configmaps", "ConfigMap")
SERVICES: Final = Resource("", "v1", "services", "Service")
PODS: Final = Resource("", "v1", "pods", "Pod")
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments", "Deployment")
SERVICE_ACCOUNTS: Final = Resource("", "v1", "serviceaccounts", "ServiceAccount")
ROLES: Final = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS: Final = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")

# The preview CRDs, as the v0.3.0 bundle (config/crd/preview.yaml) installs them.
PREVIEW_CRD_NAMES: Final = (PREVIEW_POOLS.qualified, PREVIEW_MODELS.qualified)
# The GA CRDs the zero-downtime path needs next to the preview ones (GKE >= 1.34 ships the first).
GA_CRD_NAMES: Final = (GA_POOLS.qualified, OBJECTIVES.qualified)

BY_KIND: Final = {
    (r.group, r.kind): r
    for r in (
        PREVIEW_POOLS, PREVIEW_MODELS, GA_POOLS, OBJECTIVES, MODEL_REWRITES, HTTPROUTES, GATEWAYS,
        REFERENCE_GRANTS, CRDS, NAMESPACES, CONFIGMAPS, SERVICES, PODS, DEPLOYMENTS, SERVICE_ACCOUNTS, ROLES,
        ROLE_BINDINGS,
    )
}


def resource_of(obj: Obj) -> Resource:
    """The resource that serves ``obj`` (by its apiVersion's group and kind)."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    kind = str(obj.get("kind", ""))
    found = BY_KIND.get((group, kind))
    if found is None:
        raise ValueError(f"no resource known for {kind} in group {group or 'core'!r}")
    return found


def meta(obj: Obj) -> dict[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Obj, default: str = "default") -> str:
    return str(meta(obj).get("namespace") or default)
