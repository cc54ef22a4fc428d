"""``llm-d.ai/v1alpha2``: InferenceObjective and InferenceModelRewrite as the llm-d router
(v0.9.0+, reference v0.10.0) hosts them after they left GIE (GIE PR #2973).

The schemas are those of GIE v1.5.0's ``inference.networking.x-k8s.io/v1alpha2`` kinds, except
that ``InferenceObjective.spec.priority`` is an int32. When both groups are installed, the
llm-d router reconciles only ``llm-d.ai`` (llm-d-router PR #1449); infergate's EPP does the same.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from infergate.api.base import Condition, Int32, K8sModel, conditions_field
from infergate.api.core import Resource
from infergate.api.inference_v1alpha2 import InferenceModelRewriteSpec, ObjectivePoolReference

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "InferenceModelRewrite",
    "InferenceObjective",
    "InferenceObjectiveSpec",
]

GROUP = "llm-d.ai"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"


class InferenceObjectiveSpec(K8sModel):
    priority: Int32 | None = None
    pool_ref: ObjectivePoolReference


class _ReadyStatus(K8sModel):
    conditions: Annotated[list[Condition] | None, conditions_field("Ready")] = None


class _AcceptedStatus(K8sModel):
    conditions: Annotated[list[Condition] | None, conditions_field("Accepted")] = None


class InferenceObjective(Resource):
    """InferenceObjective ``llm-d.ai/v1alpha2``: the priority of requests naming it in a header."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferenceObjective"

    spec: InferenceObjectiveSpec | None = None
    status: _ReadyStatus | None = None


class InferenceModelRewrite(Resource):
    """InferenceModelRewrite ``llm-d.ai/v1alpha2``: rewrites of the body's model name, by weight."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "InferenceModelRewrite"

    spec: InferenceModelRewriteSpec | None = None
    status: _AcceptedStatus | None = None
