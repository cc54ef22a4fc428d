"""``inference.networking.k8s.io/v1``: the GA InferencePool (GIE release v1.0.0)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from infergate.api.base import (
    Condition,
    FailureMode,
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
    "GROUP",
    "VERSION",
    "EndpointPickerRef",
    "InferencePool",
    "InferencePoolSpec",
    "InferencePoolStatus",
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

GroupMin0 = Annotated[Group, S(min_length=0)]


class Port(K8sModel):
    number: PortNumber


class LabelSelector(K8sModel):
    """A Service-style selector: every label must match (same namespace only)."""

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


class InferencePoolSpec(K8sModel):
    selector: LabelSelector
    target_ports: Annotated[list[Port], S(min_items=1, max_items=1, list_type="atomic")]
    endpoint_picker_ref: EndpointPickerRef


class ParentReference(K8sModel):
    group: GroupMin0 = "gateway.networking.k8s.io"
    kind: Kind = "Gateway"
    name: ObjectName
    namespace: Namespace | None = None


class ParentStatus(K8sModel):
    conditions: Annotated[
        list[Condition] | None, S(max_items=8, list_type="map", list_map_keys=("type",))
    ] = None
    parent_ref: ParentReference


class InferencePoolStatus(K8sModel):
    parents: Annotated[list[ParentStatus] | None, S(max_items=32, list_type="atomic")] = None


class InferencePool(Resource):
    """InferencePool v1 (GIE v1.0.0, short name ``infpool``)."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferencePool"

    spec: InferencePoolSpec
    status: InferencePoolStatus | None = None
