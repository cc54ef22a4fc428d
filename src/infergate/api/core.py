"""Object metadata, the resource base class, and the built-in kinds the controller reads.

``Pod``, ``Service`` and ``Namespace`` are built-ins: the fields the controller reads are
typed, everything else a real object carries is kept as it is (validated loosely).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from infergate.api.base import K8sModel, LooseModel

__all__ = [
    "Container",
    "ContainerPort",
    "Namespace",
    "NamespaceSpec",
    "NamespaceStatus",
    "ObjectMeta",
    "OwnerReference",
    "Pod",
    "PodCondition",
    "PodIP",
    "PodSpec",
    "PodStatus",
    "Resource",
    "Service",
    "ServicePort",
    "ServiceSpec",
]


class OwnerReference(K8sModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(K8sModel):
    """``metav1.ObjectMeta`` (in a CRD schema it is just ``type: object``)."""

    __k8s_opaque__ = True

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    self_link: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None


class Resource(K8sModel):
    """Base of every top-level kind: ``apiVersion``, ``kind``, ``metadata``.

    ``apiVersion`` and ``kind`` are filled from the class when omitted.
    """

    API_VERSION: ClassVar[str] = ""
    KIND: ClassVar[str] = ""
    __k8s_fixed__: ClassVar[dict[str, dict[str, Any]]] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
    }

    api_version: str = ""
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="before")
    @classmethod
    def _fill_type_meta(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if not data.get("apiVersion") and not data.get("api_version"):
                data["apiVersion"] = cls.API_VERSION
            if not data.get("kind"):
                data["kind"] = cls.KIND
        return data

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""


# ---------------------------------------------------------------------------------------
# Built-ins (validated loosely)


class ContainerPort(LooseModel):
    container_port: int
    name: str | None = None
    protocol: str | None = None


class Container(LooseModel):
    name: str
    image: str | None = None
    ports: list[ContainerPort] | None = None


class PodSpec(LooseModel):
    containers: list[Container] = Field(default_factory=list)
    node_name: str | None = None


class PodCondition(LooseModel):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    last_probe_time: str | None = None


class PodIP(LooseModel):
    ip: str


class PodStatus(LooseModel):
    phase: str | None = None
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(default=None, alias="podIPs")
    host_ip: str | None = Field(default=None, alias="hostIP")
    conditions: list[PodCondition] | None = None


class Pod(Resource):
    """``v1/Pod``: labels, readiness and ``status.podIP`` are what the controller reads."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Pod"

    spec: PodSpec | None = None
    status: PodStatus | None = None

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.metadata.labels or {})

    @property
    def pod_ip(self) -> str | None:
        return self.status.pod_ip if self.status else None

    def is_ready(self) -> bool:
        """``Ready=True`` and not being deleted (what the EPP counts as a pool member)."""
        if self.metadata.deletion_timestamp:
            return False
        if self.status is None:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in self.status.conditions or [])


class ServicePort(LooseModel):
    port: int
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None
    target_port: int | str | None = None
    node_port: int | None = None


class ServiceSpec(LooseModel):
    selector: dict[str, str] | None = None
    ports: list[ServicePort] | None = None
    type: str | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    external_name: str | None = None


class Service(Resource):
    """``v1/Service``: selector, ports, type (ExternalName is never a valid EPP)."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Service"

    spec: ServiceSpec | None = None
    status: dict[str, Any] | None = None

    def port(self, number: int) -> ServicePort | None:
        for p in (self.spec.ports if self.spec else None) or []:
            if p.port == number:
                return p
        return None


class NamespaceSpec(LooseModel):
    finalizers: list[str] | None = None


class NamespaceStatus(LooseModel):
    phase: Literal["Active", "Terminating"] | str | None = None


class Namespace(Resource):
    """``v1/Namespace``: labels (for ``allowedRoutes`` selectors) and phase."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Namespace"

    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.metadata.labels or {})
