"""Kubernetes objects as the controller sees them: read-only views over manifest dicts.

The translator works on plain manifest dicts (what the API server or a YAML file returns),
wrapped in ``ObservedObject`` for typed access to identity fields. Defaults the CRDs would fill
(``group``, ``kind``, ``failureMode``...) are applied where a field is read, so manifests
written by hand (without the API server's defaulting) translate the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infergate.kube import kinds
from infergate.kube.kinds import Kind

GATEWAY_GROUP = "gateway.networking.k8s.io"
INFERENCE_GROUP = "inference.networking.k8s.io"  # GA, v1
INFERENCE_X_GROUP = "inference.networking.x-k8s.io"  # preview, v1alpha2
CORE_GROUP = ""
DISCOVERY_GROUP = "discovery.k8s.io"
POOL_GROUPS = (INFERENCE_GROUP, INFERENCE_X_GROUP)

# Every kind a snapshot holds (the Kubernetes provider lists and watches each), from the one table.
SNAPSHOT_KINDS: tuple[Kind, ...] = (
    kinds.GATEWAY_CLASSES, kinds.GATEWAYS, kinds.HTTPROUTES, kinds.REFERENCE_GRANTS, kinds.GA_POOLS,
    kinds.PREVIEW_POOLS, kinds.OBJECTIVES, kinds.PREVIEW_MODELS, kinds.SERVICES, kinds.PODS, kinds.NAMESPACES,
    kinds.ENDPOINT_SLICES, kinds.SECRETS,
)
# (group, kind) -> the apiVersion used to list/watch it
KINDS: dict[tuple[str, str], str] = {k.gk: k.api_version for k in SNAPSHOT_KINDS}
CLUSTER_SCOPED = {k.gk for k in SNAPSHOT_KINDS if not k.namespaced}


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"gateway.networking.k8s.io/v1"`` -> (group, version); ``"v1"`` -> ("", "v1")."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identity of one object: group, kind, namespace ("" when cluster-scoped), name."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        gk = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{gk} {self.namespace}/{self.name}" if self.namespace else f"{gk} {self.name}"


@dataclass(frozen=True)
class ObservedObject:
    """One object: its identity plus the manifest dict (treat ``body`` as read-only)."""

    ref: ObjectRef
    version: str
    body: Mapping[str, Any] = field(compare=False, hash=False, repr=False)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ObservedObject:
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise ValueError("apiVersion and kind: Required value")
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{kind}: metadata.name: Required value")
        group, version = split_api_version(api_version)
        namespaced = (group, kind) not in CLUSTER_SCOPED
        namespace = (meta.get("namespace") or "default") if namespaced else ""
        return cls(ObjectRef(group, kind, namespace, name), version, obj)

    @property
    def kind(self) -> str:
        return self.ref.kind

    @property
    def group(self) -> str:
        return self.ref.group

    @property
    def namespace(self) -> str:
        return self.ref.namespace

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.body.get("metadata") or {}

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.body.get("spec") or {}

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}

    @property
    def labels(self) -> Mapping[str, str]:
        return self.metadata.get("labels") or {}

    @property
    def generation(self) -> int:
        value = self.metadata.get("generation")
        return int(value) if isinstance(value, int) else 1

    @property
    def creation_timestamp(self) -> str:
        value = self.metadata.get("creationTimestamp")
        return str(value) if value else ""

    @property
    def deleting(self) -> bool:
        return bool(self.metadata.get("deletionTimestamp"))

