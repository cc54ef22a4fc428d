"""Every kind infergate knows: names, versions, scope, model class, CRD settings.

Lookups: :func:`by_gvk` (``apiVersion`` + ``kind``), :func:`by_plural` (group + plural),
:func:`all_types`. The x-k8s.io ``InferencePool`` exists in two releases with the same
GVK: :func:`by_gvk` answers the preview one (GIE v0.3.0) unless ``release="v1.0.0"``.
The same holds for the v1 ``InferencePool`` (v1.6.0 first: a superset of v1.0.0) and the
x-k8s.io ``InferenceObjective`` (v1.0.0 first; v1.5.0 has the same schema).

Which release a type comes from is :attr:`ResourceType.release`; the CRD of a type carries it
in its bundle-version annotation, and the API server validates an object with the type of the
release its installed CRD names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from infergate.api import gateway_v1, inference_v1, inference_v1alpha2, llmd_v1alpha2
from infergate.api.core import Namespace, Pod, Resource, Service
from infergate.api.schema import schema_for

__all__ = [
    "PREVIEW",
    "RELEASE_GATEWAY_API",
    "RELEASE_GIE_V0_3",
    "RELEASE_GIE_V1_0",
    "RELEASE_GIE_V1_5",
    "RELEASE_GIE_V1_6",
    "RELEASE_LLMD_ROUTER",
    "PrinterColumn",
    "ResourceType",
    "all_types",
    "by_gvk",
    "by_kind",
    "by_plural",
]

RELEASE_GIE_V0_3 = "v0.3.0"
RELEASE_GIE_V1_0 = "v1.0.0"
RELEASE_GIE_V1_5 = "v1.5.0"
RELEASE_GIE_V1_6 = "v1.6.0"
RELEASE_LLMD_ROUTER = "llm-d-router-v0.10.0"
RELEASE_GATEWAY_API = "gateway-api-v1.3.0"
RELEASE_CORE = "core"
PREVIEW = RELEASE_GIE_V0_3


@dataclass(frozen=True)
class PrinterColumn:
    """An ``additionalPrinterColumns`` entry."""

    name: str
    json_path: str
    type: str = "string"
    priority: int | None = None
    description: str | None = None
    format: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description is not None:
            out["description"] = self.description
        if self.format is not None:
            out["format"] = self.format
        out["jsonPath"] = self.json_path
        out["name"] = self.name
        if self.priority is not None:
            out["priority"] = self.priority
        out["type"] = self.type
        return out


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class ResourceType:
    """One kind: its API names, scope and the model that validates and holds it."""

    group: str
    version: str  # the storage (preferred) version
    kind: str
    plural: str
    model: type[Resource]
    namespaced: bool = True
    versions: tuple[str, ...] = ()  # every served version, storage first; () = (version,)
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = True
    printer_columns: tuple[PrinterColumn, ...] = ()
    release: str = ""
    builtin: bool = False
    annotations: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.versions:
            object.__setattr__(self, "versions", (self.version,))
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def served_versions(self) -> tuple[str, ...]:
        return self.versions or (self.version,)

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.served_versions)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def has_status(self) -> bool:
        return self.status_subresource

    def schema(self) -> dict[str, Any]:
        """The structural OpenAPI v3 schema (a fresh copy) generated from the model."""
        return _schema(self.model)

    def shared_schema(self) -> dict[str, Any]:
        """The same schema, shared and cached: read it, never change it."""
        return _schema_cached(self.model)


@cache
def _schema_cached(model: type[Resource]) -> dict[str, Any]:
    return schema_for(model)


def _schema(model: type[Resource]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(_schema_cached(model))


_GIE_V1_ANNOTATIONS = (("inference.networking.k8s.io/bundle-version", RELEASE_GIE_V1_0),)
_GIE_V1_5_ANNOTATIONS = (("inference.networking.k8s.io/bundle-version", RELEASE_GIE_V1_5),)
_GIE_V1_6_ANNOTATIONS = (("inference.networking.k8s.io/bundle-version", RELEASE_GIE_V1_6),)
# the llm-d router's v0.10.0 CRDs carry its development bundle version
_LLMD_ANNOTATIONS = (("llm-d.ai/bundle-version", "main-dev"),)
_POOL_API_APPROVED = (
    "api-approved.kubernetes.io",
    "https://github.com/kubernetes-sigs/gateway-api-inference-extension/pull/1173",
)
_OBJECTIVE_COLUMNS = (
    PrinterColumn("Inference Pool", ".spec.poolRef.name"),
    PrinterColumn("Priority", ".spec.priority"),
    AGE,
)
_REWRITE_COLUMNS = (PrinterColumn("Inference Pool", ".spec.poolRef.name"), AGE)


def _ga_pool(model: type[Resource], release: str, annotations: tuple[tuple[str, str], ...]) -> ResourceType:
    """The v1 ``InferencePool`` of one GIE release."""
    return ResourceType(
        group=inference_v1.GROUP,
        version="v1",
        kind="InferencePool",
        plural="inferencepools",
        model=model,
        short_names=("infpool",),
        release=release,
        annotations=(_POOL_API_APPROVED, *annotations),
    )


def _objective(
    group: str, model: type[Resource], release: str, annotations: tuple[tuple[str, str], ...]
) -> ResourceType:
    """``InferenceObjective`` (v1alpha2) in one group and release."""
    return ResourceType(
        group=group,
        version="v1alpha2",
        kind="InferenceObjective",
        plural="inferenceobjectives",
        model=model,
        printer_columns=_OBJECTIVE_COLUMNS,
        release=release,
        annotations=annotations,
    )


def _rewrite(
    group: str, model: type[Resource], release: str, annotations: tuple[tuple[str, str], ...]
) -> ResourceType:
    """``InferenceModelRewrite`` (v1alpha2) in one group and release."""
    return ResourceType(
        group=group,
        version="v1alpha2",
        kind="InferenceModelRewrite",
        plural="inferencemodelrewrites",
        model=model,
        printer_columns=_REWRITE_COLUMNS,
        release=release,
        annotations=annotations,
    )


_TYPES: tuple[ResourceType, ...] = (
    # GIE v0.3.0 (preview)
    ResourceType(
        group=inference_v1alpha2.GROUP,
        version="v1alpha2",
        kind="InferencePool",
        plural="inferencepools",
        model=inference_v1alpha2.InferencePool,
        release=RELEASE_GIE_V0_3,
    ),
    ResourceType(
        group=inference_v1alpha2.GROUP,
        version="v1alpha2",
        kind="InferenceModel",
        plural="inferencemodels",
        model=inference_v1alpha2.InferenceModel,
        printer_columns=(
            PrinterColumn("Model Name", ".spec.modelName"),
            PrinterColumn("Inference Pool", ".spec.poolRef.name"),
            PrinterColumn("Criticality", ".spec.criticality"),
            AGE,
        ),
        release=RELEASE_GIE_V0_3,
    ),
    # GIE v1.6.0 (today's GA InferencePool; a superset of v1.0.0's, listed first)
    _ga_pool(inference_v1.InferencePool, RELEASE_GIE_V1_6, _GIE_V1_6_ANNOTATIONS),
    # GIE v1.0.0 (GA)
    _ga_pool(inference_v1.InferencePoolV1_0, RELEASE_GIE_V1_0, _GIE_V1_ANNOTATIONS),
    _objective(
        inference_v1alpha2.GROUP, inference_v1alpha2.InferenceObjective, RELEASE_GIE_V1_0, _GIE_V1_ANNOTATIONS
    ),
    ResourceType(
        group=inference_v1alpha2.GROUP,
        version="v1alpha2",
        kind="InferencePool",
        plural="inferencepools",
        model=inference_v1alpha2.XInferencePool,
        short_names=("xinfpool",),
        release=RELEASE_GIE_V1_0,
        annotations=(("api-approved.kubernetes.io", "unapproved, experimental-only"), *_GIE_V1_ANNOTATIONS),
    ),
    # GIE v1.5.0: the last x-k8s.io InferenceObjective and InferenceModelRewrite
    _objective(
        inference_v1alpha2.GROUP,
        inference_v1alpha2.InferenceObjective,
        RELEASE_GIE_V1_5,
        _GIE_V1_5_ANNOTATIONS,
    ),
    _rewrite(
        inference_v1alpha2.GROUP,
        inference_v1alpha2.InferenceModelRewrite,
        RELEASE_GIE_V1_5,
        _GIE_V1_5_ANNOTATIONS,
    ),
    # llm-d router v0.10.0: the same two kinds under llm-d.ai (they win when both are installed)
    _objective(llmd_v1alpha2.GROUP, llmd_v1alpha2.InferenceObjective, RELEASE_LLMD_ROUTER, _LLMD_ANNOTATIONS),
    _rewrite(
        llmd_v1alpha2.GROUP, llmd_v1alpha2.InferenceModelRewrite, RELEASE_LLMD_ROUTER, _LLMD_ANNOTATIONS
    ),
    # Gateway API v1.3.0 standard channel
    ResourceType(
        group=gateway_v1.GROUP,
        version="v1",
        versions=("v1", "v1beta1"),
        kind="GatewayClass",
        plural="gatewayclasses",
        model=gateway_v1.GatewayClass,
        namespaced=False,
        short_names=("gc",),
        categories=("gateway-api",),
        printer_columns=(
            PrinterColumn("Controller", ".spec.controllerName"),
            PrinterColumn("Accepted", '.status.conditions[?(@.type=="Accepted")].status'),
            AGE,
            PrinterColumn("Description", ".spec.description", priority=1),
        ),
        release=RELEASE_GATEWAY_API,
    ),
    ResourceType(
        group=gateway_v1.GROUP,
        version="v1",
        versions=("v1", "v1beta1"),
        kind="Gateway",
        plural="gateways",
        model=gateway_v1.Gateway,
        short_names=("gtw",),
        categories=("gateway-api",),
        printer_columns=(
            PrinterColumn("Class", ".spec.gatewayClassName"),
            PrinterColumn("Address", ".status.addresses[*].value"),
            PrinterColumn("Programmed", '.status.conditions[?(@.type=="Programmed")].status'),
            AGE,
        ),
        release=RELEASE_GATEWAY_API,
    ),
    ResourceType(
        group=gateway_v1.GROUP,
        version="v1",
        versions=("v1", "v1beta1"),
        kind="HTTPRoute",
        plural="httproutes",
        model=gateway_v1.HTTPRoute,
        categories=("gateway-api",),
        printer_columns=(PrinterColumn("Hostnames", ".spec.hostnames"), AGE),
        release=RELEASE_GATEWAY_API,
    ),
    ResourceType(
        group=gateway_v1.GROUP,
        version="v1beta1",
        kind="ReferenceGrant",
        plural="referencegrants",
        model=gateway_v1.ReferenceGrant,
        short_names=("refgrant",),
        categories=("gateway-api",),
        status_subresource=False,
        printer_columns=(AGE,),
        release=RELEASE_GATEWAY_API,
    ),
    # Built-ins
    ResourceType(
        group="",
        version="v1",
        kind="Pod",
        plural="pods",
        model=Pod,
        short_names=("po",),
        categories=("all",),
        release=RELEASE_CORE,
        builtin=True,
    ),
    ResourceType(
        group="",
        version="v1",
        kind="Service",
        plural="services",
        model=Service,
        short_names=("svc",),
        categories=("all",),
        release=RELEASE_CORE,
        builtin=True,
    ),
    ResourceType(
        group="",
        version="v1",
        kind="Namespace",
        plural="namespaces",
        model=Namespace,
        namespaced=False,
        short_names=("ns",),
        release=RELEASE_CORE,
        builtin=True,
    ),
)

_GATEWAY_API_ANNOTATIONS = (
    ("api-approved.kubernetes.io", "https://github.com/kubernetes-sigs/gateway-api/pull/3328"),
    ("gateway.networking.k8s.io/bundle-version", gateway_v1.BUNDLE_VERSION),
    ("gateway.networking.k8s.io/channel", "standard"),
)


def _with_defaults(t: ResourceType) -> ResourceType:
    if t.release == RELEASE_GATEWAY_API and not t.annotations:
        return ResourceType(**{**t.__dict__, "annotations": _GATEWAY_API_ANNOTATIONS})
    return t


_ALL: tuple[ResourceType, ...] = tuple(_with_defaults(t) for t in _TYPES)


def all_types() -> list[ResourceType]:
    """Every kind; where releases share a GVK, the one :func:`by_gvk` answers by default first."""
    return list(_ALL)


def _split(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        g, v = api_version.split("/", 1)
        return g, v
    return "", api_version


def by_gvk(api_version: str, kind: str, release: str | None = None) -> ResourceType | None:
    """The type for ``apiVersion`` + ``kind`` (any served version), or None."""
    group, version = _split(api_version)
    candidates = [
        t for t in all_types() if t.group == group and t.kind == kind and version in t.served_versions
    ]
    if release is not None:
        candidates = [t for t in candidates if t.release == release] or candidates
    return candidates[0] if candidates else None


def by_plural(group: str, plural: str, release: str | None = None) -> ResourceType | None:
    """The type for a group and plural resource name (``inference.networking.k8s.io``, ``inferencepools``)."""
    candidates = [t for t in all_types() if t.group == group and t.plural == plural]
    if release is not None:
        candidates = [t for t in candidates if t.release == release] or candidates
    return candidates[0] if candidates else None


def by_kind(kind: str) -> list[ResourceType]:
    """Every type with this kind (several groups may share it)."""
    return [t for t in all_types() if t.kind == kind]


def by_model(model: type[Resource]) -> ResourceType | None:
    for t in all_types():
        if t.model is model:
            return t
    return None


__all__ += ["RELEASE_CORE", "by_model"]
