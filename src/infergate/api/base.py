"""Base classes and the shared field types (Gateway API / GIE markers as data)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from infergate.api.schema import Rule, S

__all__ = [
    "CONDITION_PENDING_TIME",
    "AnnotationKey",
    "Condition",
    "ConditionStatus",
    "FailureMode",
    "Group",
    "Int32",
    "Int64",
    "K8sModel",
    "Kind",
    "LabelValue",
    "ListMapConditions",
    "Namespace",
    "ObjectName",
    "PortNumber",
    "Rule",
    "S",
    "SectionName",
    "pending_condition",
]


class K8sModel(BaseModel):
    """Base of every resource model: camelCase JSON names, unknown fields rejected."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_assignment=False,
        protected_namespaces=(),
    )

    def to_dict(self) -> dict[str, Any]:
        """The camelCase JSON form, without unset (``None``) fields."""
        out: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return out


class LooseModel(K8sModel):
    """Base of the built-in kinds: fields the controller reads are typed, the rest kept."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="allow",
        alias_generator=to_camel,
        protected_namespaces=(),
    )


# ---------------------------------------------------------------------------------------
# Scalar types (the Gateway API / GIE shared_types.go markers)

Int32 = Annotated[int, S(format="int32")]
Int64 = Annotated[int, S(format="int64")]

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
PRECISE_HOSTNAME_PATTERN = DNS1123_SUBDOMAIN
CONTROLLER_NAME_PATTERN = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"
)
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$"

Group = Annotated[str, S(max_length=253, pattern=GROUP_PATTERN)]
"""Group of a referent (``""`` is the core group)."""
Kind = Annotated[str, S(min_length=1, max_length=63, pattern=KIND_PATTERN)]
ObjectName = Annotated[str, S(min_length=1, max_length=253)]
Namespace = Annotated[str, S(min_length=1, max_length=63, pattern=NAMESPACE_PATTERN)]
SectionName = Annotated[str, S(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)]
PortNumber = Annotated[int, S(format="int32", minimum=1, maximum=65535)]
LabelValue = Annotated[str, S(min_length=0, max_length=63, pattern=LABEL_VALUE_PATTERN)]
AnnotationKey = str
Hostname = Annotated[str, S(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]
PreciseHostname = Annotated[str, S(min_length=1, max_length=253, pattern=PRECISE_HOSTNAME_PATTERN)]
GatewayController = Annotated[str, S(min_length=1, max_length=253, pattern=CONTROLLER_NAME_PATTERN)]
HeaderName = Annotated[str, S(min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN)]

FailureMode = Literal["FailOpen", "FailClose"]
ConditionStatus = Literal["True", "False", "Unknown"]


# ---------------------------------------------------------------------------------------
# metav1.Condition


class Condition(K8sModel):
    """``metav1.Condition``: one aspect of an object's observed state."""

    last_transition_time: Annotated[str, S(format="date-time")]
    message: Annotated[str, S(max_length=32768)]
    observed_generation: Annotated[int | None, S(format="int64", minimum=0)] = None
    reason: Annotated[
        str, S(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    ]
    status: ConditionStatus
    type: Annotated[
        str,
        S(
            max_length=316,
            pattern=(
                r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
            ),
        ),
    ]


CONDITION_PENDING_TIME = "1970-01-01T00:00:00Z"


def pending_condition(type_: str) -> dict[str, Any]:
    """The ``Waiting for controller`` placeholder condition that CRD defaults carry."""
    return {
        "lastTransitionTime": CONDITION_PENDING_TIME,
        "message": "Waiting for controller",
        "reason": "Pending",
        "status": "Unknown",
        "type": type_,
    }


ListMapConditions = S(max_items=8, list_type="map", list_map_keys=("type",))
"""Markers of a ``[]metav1.Condition`` field: at most 8, keyed by ``type``."""


def conditions_field(*default_types: str, max_items: int = 8, min_items: int | None = None) -> S:
    """Markers of a conditions list, with a CRD default of placeholder conditions."""
    default: Any = [pending_condition(t) for t in default_types] if default_types else None
    return S(
        max_items=max_items,
        min_items=min_items,
        list_type="map",
        list_map_keys=("type",),
        default=default if default is not None else S().default,
    )


def immutable(message: str = "Value is immutable") -> Rule:
    return Rule("self == oldSelf", message)


__all__ += [
    "DNS1123_SUBDOMAIN",
    "GatewayController",
    "HeaderName",
    "Hostname",
    "LooseModel",
    "PreciseHostname",
    "conditions_field",
    "immutable",
]
