"""The Kubernetes kinds the migration reads and writes (from ``infergate.kube.kinds``), always fully qualified.

Both InferencePool CRDs (``inferencepools.inference.networking.x-k8s.io`` and
``inferencepools.inference.networking.k8s.io``) serve the kind ``InferencePool``; the
migration never resolves a bare ``inferencepools`` (migration.md §9 case 1), it names the
group of every resource it touches.
"""

from __future__ import annotations

from typing import Any, Final

from infergate.kube import kinds
from infergate.kube.kinds import Kind

Obj = dict[str, Any]

PREVIEW_POOLS: Final = kinds.PREVIEW_POOLS
PREVIEW_MODELS: Final = kinds.PREVIEW_MODELS
GA_POOLS: Final = kinds.GA_POOLS
OBJECTIVES: Final = kinds.OBJECTIVES
MODEL_REWRITES: Final = kinds.MODEL_REWRITES
HTTPROUTES: Final = kinds.HTTPROUTES
GATEWAYS: Final = kinds.GATEWAYS
REFERENCE_GRANTS: Final = kinds.REFERENCE_GRANTS
CRDS: Final = kinds.CRDS
NAMESPACES: Final = kinds.NAMESPACES
CONFIGMAPS: Final = kinds.CONFIGMAPS
SERVICES: Final = kinds.SERVICES
PODS: Final = kinds.PODS
DEPLOYMENTS: Final = kinds.DEPLOYMENTS
SERVICE_ACCOUNTS: Final = kinds.SERVICE_ACCOUNTS
ROLES: Final = kinds.ROLES
ROLE_BINDINGS: Final = kinds.ROLE_BINDINGS

# The preview CRDs, as the v0.3.0 bundle (config/crd/preview.yaml) installs them.
PREVIEW_CRD_NAMES: Final = (PREVIEW_POOLS.qualified, PREVIEW_MODELS.qualified)
# The GA CRDs the zero-downtime path needs next to the preview ones (GKE >= 1.34 ships the first).
GA_CRD_NAMES: Final = (GA_POOLS.qualified, OBJECTIVES.qualified)


def resource_of(obj: Obj) -> Kind:
    """The kind that serves ``obj`` (by its apiVersion's group and kind)."""
    return kinds.of(obj)


def meta(obj: Obj) -> dict[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Obj, default: str = "default") -> str:
    return str(meta(obj).get("namespace") or default)
