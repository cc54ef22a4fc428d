"""Translator options and result types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infergate.controller.resources import ObjectRef
from infergate.controller.translator.addresses import AddressAllocator, LoopbackAllocator
from infergate.ir import DataplaneConfig

DEFAULT_CONTROLLER_NAME = "infergate.io/gateway-controller"
EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class TranslatorOptions:
    controller_name: str = DEFAULT_CONTROLLER_NAME
    # Further GatewayClass names to serve whatever their controllerName (or when the class
    # object does not exist), e.g. "gke-l7-regional-external-managed" from the source document.
    extra_gateway_classes: frozenset[str] = frozenset()
    addresses: AddressAllocator = field(default_factory=LoopbackAllocator)
    now: str = EPOCH  # lastTransitionTime of conditions built by this translation
    body_based_routing: bool = True  # copy the body's "model" into X-Gateway-Model-Name


@dataclass(frozen=True)
class TranslationResult:
    ir: DataplaneConfig
    # The part of each object's status this controller owns (see ``infergate.controller.status``
    # for merging it into the stored status). HTTPRoutes: {"parents": [our entries]};
    # InferencePools: {"parents" | "parent": [entries for our Gateways]}; Gateways and
    # GatewayClasses: the whole status.
    statuses: dict[ObjectRef, dict[str, Any]]
    # Gateways that exist but belong to another controller: their entries in InferencePool
    # parent lists are left alone; entries for every other Gateway are ours to rewrite.
    foreign_gateways: frozenset[ObjectRef] = frozenset()
    warnings: tuple[str, ...] = ()
