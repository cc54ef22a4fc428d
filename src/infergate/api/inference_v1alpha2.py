"""``inference.networking.x-k8s.io/v1alpha2``: the preview API.

- :class:`InferencePool` and :class:`InferenceModel` as in GIE release v0.3.0;
- :class:`InferenceObjective` as in release v1.0.0;
- :class:`XInferencePool`: the x-k8s.io ``InferencePool`` as release v1.0.0 still ships it
  (short name ``xinfpool``, a ``ParentGatewayReference`` parentRef and a whole-status
  default holding the synthetic ``{kind: Status, name: default}`` parent). Same group,
  version and kind as :class:`InferencePool`; the spec is identical.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import Field

from infergate.api.base import (
    Condition,
    FailureMode,
    Group,
    Int32,
    K8sModel,
    Kind,
    LabelValue,
    Namespace,
    ObjectName,
    PortNumber,
    Rule,
    S,
    conditions_field,
    immutable,
    pending_condition,
)
from infergate.api.core import Resource

__all__ = [
    "GROUP",
    "VERSION",
    "Criticality",
    "Extension",
    "InferenceModel",
    "InferenceModelSpec",
    "InferenceModelStatus",
    "InferenceObjective",
    "InferenceObjectiveSpec",
    "InferenceObjectiveStatus",
    "InferencePool",
    "InferencePoolSpec",
    "InferencePoolStatus",
    "ObjectReference",
    "ParentGatewayReference",
    "PoolObjectReference",
    "PoolStatus",
    "TargetModel",
    "XInferencePool",
    "XInferencePoolStatus",
    "XPoolStatus",
]

GROUP = "inference.networking.x-k8s.io"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"

# Accepted condition reasons (v0.3.0; v1.0.0 adds HTTPRouteNotAccepted).
ACCEPTED = "Accepted"
RESOLVED_REFS = "ResolvedRefs"
REASON_ACCEPTED = "Accepted"
REASON_NOT_SUPPORTED_BY_GATEWAY = "NotSupportedByGateway"
REASON_HTTPROUTE_NOT_ACCEPTED = "HTTPRouteNotAccepted"
REASON_PENDING = "Pending"
REASON_RESOLVED_REFS = "ResolvedRefs"
REASON_INVALID_EXTENSION_REF = "InvalidExtensionRef"
REASON_MODEL_NAME_IN_USE = "ModelNameInUse"

Criticality = Literal["Critical", "Standard", "Sheddable"]


class Extension(K8sModel):
    """``spec.extensionRef``: the endpoint picker (EPP) of the pool."""

    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    port_number: PortNumber | None = None
    failure_mode: FailureMode = "FailClose"


class InferencePoolSpec(K8sModel):
    selector: dict[str, LabelValue]
    target_port_number: PortNumber
    extension_ref: Extension


class ObjectReference(K8sModel):
    """``corev1.ObjectReference`` (the v0.3.0 status parentRef)."""

    __k8s__: ClassVar[S] = S(map_type="atomic")

    api_version: str | None = None
    field_path: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    resource_version: str | None = None
    uid: str | None = None


class PoolStatus(K8sModel):
    parent_ref: ObjectReference
    conditions: Annotated[list[Condition] | None, conditions_field("Accepted")] = None


class InferencePoolStatus(K8sModel):
    parents: Annotated[list[PoolStatus] | None, S(max_items=32)] = Field(default=None, alias="parent")


class InferencePool(Resource):
    """InferencePool v1alpha2 (GIE v0.3.0): pods by a selector map, one target port, an EPP."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferencePool"

    spec: InferencePoolSpec | None = None
    status: InferencePoolStatus | None = None


# ---------------------------------------------------------------------------------------
# The x-k8s.io InferencePool as shipped in v1.0.0


class ParentGatewayReference(K8sModel):
    group: Group = "gateway.networking.k8s.io"
    kind: Kind = "Gateway"
    name: ObjectName
    namespace: Namespace | None = None


class XPoolStatus(K8sModel):
    parent_ref: ParentGatewayReference
    conditions: Annotated[list[Condition] | None, conditions_field("Accepted")] = None


SYNTHETIC_PARENT: dict[str, Any] = {
    "parentRef": {"kind": "Status", "name": "default"},
    "conditions": [pending_condition("Accepted")],
}


class XInferencePoolStatus(K8sModel):
    parents: Annotated[list[XPoolStatus] | None, S(max_items=32)] = Field(default=None, alias="parent")


class XInferencePool(Resource):
    """InferencePool x-k8s.io/v1alpha2 as in GIE v1.0.0 (short name ``xinfpool``)."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferencePool"

    spec: InferencePoolSpec | None = None
    status: Annotated[XInferencePoolStatus | None, S(default={"parent": [SYNTHETIC_PARENT]})] = None


# ---------------------------------------------------------------------------------------
# InferenceModel (v0.3.0)


class TargetModel(K8sModel):
    name: Annotated[str, S(max_length=253)]
    weight: Annotated[Int32 | None, S(minimum=1, maximum=1000000)] = None


class PoolObjectReference(K8sModel):
    """``spec.poolRef`` of an InferenceModel (same namespace)."""

    group: Group = GROUP
    kind: Kind = "InferencePool"
    name: ObjectName


class InferenceModelSpec(K8sModel):
    model_name: Annotated[str, S(max_length=256, rules=(immutable("modelName is immutable"),))]
    criticality: Criticality | None = None
    target_models: Annotated[
        list[TargetModel] | None,
        S(
            max_items=10,
            rules=(
                Rule(
                    "self.all(model, has(model.weight)) || self.all(model, !has(model.weight))",
                    "Weights should be set for all models, or none of the models.",
                ),
            ),
        ),
    ] = None
    pool_ref: PoolObjectReference


class InferenceModelStatus(K8sModel):
    conditions: Annotated[list[Condition] | None, conditions_field("Ready")] = None


class InferenceModel(Resource):
    """InferenceModel (GIE v0.3.0): a model name served by a pool, its criticality and splits."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferenceModel"

    spec: InferenceModelSpec | None = None
    status: InferenceModelStatus | None = None


# ---------------------------------------------------------------------------------------
# InferenceObjective (v1.0.0)


class ObjectivePoolReference(K8sModel):
    group: Group = "inference.networking.k8s.io"
    kind: Kind = "InferencePool"
    name: ObjectName


class InferenceObjectiveSpec(K8sModel):
    priority: int | None = None
    pool_ref: ObjectivePoolReference


class InferenceObjectiveStatus(K8sModel):
    conditions: Annotated[list[Condition] | None, conditions_field("Ready")] = None


class InferenceObjective(Resource):
    """InferenceObjective (GIE v1.0.0): the priority of requests naming it in a header."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferenceObjective"

    spec: InferenceObjectiveSpec | None = None
    status: InferenceObjectiveStatus | None = None


__all__ += ["API_VERSION", "SYNTHETIC_PARENT", "ObjectivePoolReference"]


# ---------------------------------------------------------------------------------------
# InferenceModelRewrite (v1.2.0 - v1.5.0)

MATCH_EXACT: Final = "Exact"


class ModelMatch(K8sModel):
    """``rules[].matches[].model``: the model name a request asks for (``Exact`` only)."""

    type: Literal["Exact"] = "Exact"
    value: Annotated[str, S(min_length=1)]


class Match(K8sModel):
    model: ModelMatch


class TargetModelRewrite(K8sModel):
    """``rules[].targets[]``: the model a matching request is rewritten to, and its weight."""

    model_rewrite: str
    weight: Annotated[Int32 | None, S(minimum=1, maximum=1000000)] = None


class RewriteRule(K8sModel):
    """One rule: no ``matches`` makes it a generic rule (every model of the pool)."""

    matches: list[Match] | None = None
    targets: Annotated[list[TargetModelRewrite] | None, S(min_items=1)] = None


class InferenceModelRewriteSpec(K8sModel):
    pool_ref: ObjectivePoolReference
    rules: list[RewriteRule]


class InferenceModelRewriteStatus(K8sModel):
    conditions: Annotated[list[Condition] | None, conditions_field("Accepted")] = None


class InferenceModelRewrite(Resource):
    """InferenceModelRewrite (GIE v1.2.0 - v1.5.0): rewrites of the body's model name, by weight."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferenceModelRewrite"

    spec: InferenceModelRewriteSpec | None = None
    status: InferenceModelRewriteStatus | None = None


__all__ += [
    "MATCH_EXACT",
    "InferenceModelRewrite",
    "InferenceModelRewriteSpec",
    "InferenceModelRewriteStatus",
    "Match",
    "ModelMatch",
    "RewriteRule",
    "TargetModelRewrite",
]
