"""CustomResourceDefinitions generated from the types in ``infergate.api``.

Bundles (what each upstream release installs):

- ``preview``: GIE v0.3.0 — x-k8s.io InferencePool and InferenceModel (v1alpha2);
- ``ga``: GIE v1.0.0 ``manifests.yaml`` — v1 InferencePool, x-k8s.io InferenceObjective and
  the x-k8s.io InferencePool as v1.0.0 ships it;
- ``gateway-api``: Gateway API v1.3.0 standard channel — GatewayClass, Gateway, HTTPRoute,
  ReferenceGrant;
- ``all``: both generations side by side on one cluster — ``gateway-api`` + ``ga`` +
  InferenceModel (the one preview CRD that ``ga`` does not replace);
- ``gie-v1.5``: GIE v1.5.0's x-k8s.io InferenceObjective and InferenceModelRewrite (the last
  release that ships them);
- ``gie-v1.6``: GIE v1.6.0's InferencePool (today's GA; InferencePoolImport is not served);
- ``llm-d``: the llm-d router v0.10.0's ``llm-d.ai`` InferenceObjective and InferenceModelRewrite;
- ``current``: today's installation — ``gateway-api`` + ``gie-v1.6`` + ``llm-d``.

Descriptions are not emitted (the schemas are otherwise those of upstream, which
``tests/api/test_crd_compare.py`` checks field by field).
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from infergate.api import registry
from infergate.api.registry import ResourceType

__all__ = ["BUNDLES", "BUNDLE_FILES", "crd_for", "dump_yaml", "generate", "types_in"]

BUNDLES: Final = ("preview", "ga", "gateway-api", "all", "gie-v1.5", "gie-v1.6", "llm-d", "current")
BUNDLE_FILES: Final[dict[str, str]] = {
    "preview": "preview.yaml",
    "ga": "ga.yaml",
    "gateway-api": "gateway-api.yaml",
    "gie-v1.5": "gie-v1.5.yaml",
    "gie-v1.6": "gie-v1.6.yaml",
    "llm-d": "llm-d.yaml",
}


def _select(release: str, kinds: tuple[tuple[str, str], ...]) -> list[ResourceType]:
    out: list[ResourceType] = []
    for group, kind in kinds:
        matches = [
            t for t in registry.all_types() if t.release == release and t.group == group and t.kind == kind
        ]
        if len(matches) != 1:
            raise LookupError(f"no single {release} type for {kind}.{group}")
        out.append(matches[0])
    return out


_X = "inference.networking.x-k8s.io"
_GA = "inference.networking.k8s.io"
_GW = "gateway.networking.k8s.io"
_LLMD = "llm-d.ai"


def types_in(bundle: str) -> list[ResourceType]:
    """The resource types a bundle installs, in manifest order."""
    if bundle == "preview":
        return _select(registry.RELEASE_GIE_V0_3, ((_X, "InferencePool"), (_X, "InferenceModel")))
    if bundle == "ga":
        # kustomization order of config/crd at v1.0.0
        return _select(
            registry.RELEASE_GIE_V1_0,
            ((_X, "InferencePool"), (_X, "InferenceObjective"), (_GA, "InferencePool")),
        )
    if bundle == "gateway-api":
        return _select(
            registry.RELEASE_GATEWAY_API,
            ((_GW, "GatewayClass"), (_GW, "Gateway"), (_GW, "HTTPRoute"), (_GW, "ReferenceGrant")),
        )
    if bundle == "all":
        return [
            *types_in("gateway-api"),
            *types_in("ga"),
            *_select(registry.RELEASE_GIE_V0_3, ((_X, "InferenceModel"),)),
        ]
    if bundle == "gie-v1.5":
        return _select(registry.RELEASE_GIE_V1_5, ((_X, "InferenceModelRewrite"), (_X, "InferenceObjective")))
    if bundle == "gie-v1.6":
        return _select(registry.RELEASE_GIE_V1_6, ((_GA, "InferencePool"),))
    if bundle == "llm-d":
        return _select(
            registry.RELEASE_LLMD_ROUTER, ((_LLMD, "InferenceModelRewrite"), (_LLMD, "InferenceObjective"))
        )
    if bundle == "current":
        return [*types_in("gateway-api"), *types_in("gie-v1.6"), *types_in("llm-d")]
    raise ValueError(f"unknown bundle {bundle!r} (one of {', '.join(BUNDLES)})")


def crd_for(t: ResourceType) -> dict[str, Any]:
    """The CustomResourceDefinition of one type (every served version, storage first)."""
    if t.builtin:
        raise ValueError(f"{t.kind} is a built-in kind, not a CRD")
    names: dict[str, Any] = {}
    if t.categories:
        names["categories"] = list(t.categories)
    names["kind"] = t.kind
    names["listKind"] = t.list_kind
    names["plural"] = t.plural
    if t.short_names:
        names["shortNames"] = list(t.short_names)
    names["singular"] = t.singular_name
    versions: list[dict[str, Any]] = []
    for i, version in enumerate(t.served_versions):
        v: dict[str, Any] = {}
        if t.printer_columns:
            v["additionalPrinterColumns"] = [c.to_json() for c in t.printer_columns]
        v["name"] = version
        v["schema"] = {"openAPIV3Schema": t.schema()}
        v["served"] = True
        v["storage"] = i == 0
        v["subresources"] = {"status": {}} if t.status_subresource else {}
        versions.append(v)
    metadata: dict[str, Any] = {}
    if t.annotations:
        metadata["annotations"] = dict(t.annotations)
    metadata["name"] = t.crd_name
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": t.group,
            "names": names,
            "scope": "Namespaced" if t.namespaced else "Cluster",
            "versions": versions,
        },
    }


def generate(bundle: str = "all") -> list[dict[str, Any]]:
    """The CRDs of a bundle (one of :data:`BUNDLES`)."""
    return [crd_for(t) for t in types_in(bundle)]


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(docs: list[dict[str, Any]], header: str | None = None) -> str:
    """Multi-document YAML (``---`` before each document)."""
    parts: list[str] = []
    if header:
        parts.append("".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()))
    for doc in docs:
        parts.append(
            "---\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=120)
        )
    return "".join(parts)
