"""``inference.networking.k8s.io/v1``: the GA InferencePool.

- :class:`InferencePool`: as of GIE v1.6.0 (today's GA), a superset of v1.0.0 on the same
  group and version: ``targetPorts`` up to 8 unique ports (each port of a ready pod is its own
  endpoint: data-parallel ranks), ``appProtocol`` (``http``, ``kubernetes.io/h2c``; HTTP/1.1
  by default), ``endpointPickerRef`` optional (the gateway then balances the pool itself),
  ``status.parents[].controllerName`` and a selector of 1 to 64 labels;
- :class:`InferencePoolV1_0`: the same kind exactly as GIE v1.0.0 defines it (one target port,
  ``endpointPickerRef`` required), for the v1.0.0 CRD and objects stored under it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from infergate.api.base import (
    Condition,
    FailureMode,
    GatewayController,
    Group,
    K8sModel,
    Kind,
    LabelValue,
    Namespace,
    ObjectName,
    PortNumber,
    Rule,
    S,
)
from infergate.api.core import Resource

__all__ = [
    "API_VERSION",
    "APP_PROTOCOLS",
    "GROUP",
    "VERSION",
    "EndpointPickerRef",
    "InferencePool",
    "InferencePoolSpec",
    "InferencePoolStatus",
    "InferencePoolV1_0",
    "LabelSelector",
    "ParentReference",
    "ParentStatus",
    "Port",
]

GROUP = "inference.networking.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

# Condition types and reasons (api/v1/inferencepool_types.go).
ACCEPTED = "Accepted"
RESOLVED_REFS = "ResolvedRefs"
REASON_ACCEPTED = "Accepted"
REASON_NOT_SUPPORTED_BY_PARENT = "NotSupportedByParent"
REASON_HTTPROUTE_NOT_ACCEPTED = "HTTPRouteNotAccepted"
REASON_RESOLVED_REFS = "ResolvedRefs"
REASON_INVALID_EXTENSION_REF = "InvalidExtensionRef"
REASON_ENDPOINT_PICKER_REF_MISSING = "EndpointPickerRefMissing"  # v1.6: no endpointPickerRef

AppProtocol = Literal["http", "kubernetes.io/h2c"]
APP_PROTOCOLS: tuple[str, ...] = ("http", "kubernetes.io/h2c")
MAX_TARGET_PORTS = 8

GroupMin0 = Annotated[Group, S(min_length=0)]


class Port(K8sModel):
    number: PortNumber


class LabelSelector(K8sModel):
    """A Service-style selector: every label must match (same namespace only); 1 to 64 labels."""

    match_labels: Annotated[dict[str, LabelValue], S(min_properties=1, max_properties=64)]


class LabelSelectorV1_0(K8sModel):
    """The v1.0.0 selector (no bound on the number of labels)."""

    match_labels: dict[str, LabelValue]


class EndpointPickerRef(K8sModel):
    """``spec.endpointPickerRef``: the EPP; ``port`` is the Service port, required for Services."""

    __k8s__: ClassVar[S] = S(
        rules=(
            Rule(
                "self.kind != 'Service' || has(self.port)",
                "port is required when kind is 'Service' or unspecified (defaults to 'Service')",
            ),
        )
    )

    group: GroupMin0 = ""
    kind: Kind = "Service"
    name: ObjectName
    port: Port | None = None
    failure_mode: FailureMode = "FailClose"


_UNIQUE_PORTS = Rule("self.all(p1, self.exists_one(p2, p1.number==p2.number))", "port number must be unique")


class InferencePoolSpec(K8sModel):
    """The v1.6.0 spec: up to 8 unique ports, an application protocol, an optional EPP."""

    selector: LabelSelector
    target_ports: Annotated[
        list[Port], S(min_items=1, max_items=MAX_TARGET_PORTS, list_type="atomic", rules=(_UNIQUE_PORTS,))
    ]
    app_protocol: AppProtocol = "http"
    endpoint_picker_ref: EndpointPickerRef | None = None


class InferencePoolSpecV1_0(K8sModel):
    """The v1.0.0 spec: one target port and a required EPP."""

    selector: LabelSelectorV1_0
    target_ports: Annotated[list[Port], S(min_items=1, max_items=1, list_type="atomic")]
    endpoint_picker_ref: EndpointPickerRef


class ParentReference(K8sModel):
    group: GroupMin0 = "gateway.networking.k8s.io"
    kind: Kind = "Gateway"
    name: ObjectName
    namespace: Namespace | None = None


_CONDITIONS = S(max_items=8, list_type="map", list_map_keys=("type",))


class ParentStatus(K8sModel):
    """The v1.6.0 parent status: the controller that wrote it may name itself."""

    conditions: Annotated[list[Condition] | None, _CONDITIONS] = None
    controller_name: GatewayController | None = None
    parent_ref: ParentReference


class ParentStatusV1_0(K8sModel):
    conditions: Annotated[list[Condition] | None, _CONDITIONS] = None
    parent_ref: ParentReference


class InferencePoolStatus(K8sModel):
    parents: Annotated[list[ParentStatus] | None, S(max_items=32, list_type="atomic")] = None


class InferencePoolStatusV1_0(K8sModel):
    parents: Annotated[list[ParentStatusV1_0] | None, S(max_items=32, list_type="atomic")] = None


class InferencePool(Resource):
    """InferencePool v1 as of GIE v1.6.0 (short name ``infpool``); accepts every v1.0.0 pool
    whose selector names at least one label."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferencePool"

    spec: InferencePoolSpec
    status: InferencePoolStatus | None = None


class InferencePoolV1_0(Resource):
    """InferencePool v1 exactly as GIE v1.0.0 defines it."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferencePool"

    spec: InferencePoolSpecV1_0
    status: InferencePoolStatusV1_0 | None = None
