"""Discovery documents (aggregated ``apidiscovery.k8s.io/v2`` and legacy); the OpenAPI v3
documents are built in :mod:`infergate.apiserver.openapi_v3` (see docs/apiserver.md)."""

from __future__ import annotations

from typing import Any

from infergate.apiserver import openapi_v3
from infergate.apiserver.resources import ALL_VERBS, ResourceRegistry, ServedResource

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
KUBERNETES_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0", "gitCommit": "infergate",
                      "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                      "compiler": "gc", "platform": "linux/amd64"}


def wants_aggregated(accept: str) -> bool:
    return "g=apidiscovery.k8s.io" in accept and "v=v2" in accept and "v=v2beta1" not in accept.split(",")[0]


def _by_group(registry: ResourceRegistry, core: bool) -> dict[str, list[ServedResource]]:
    groups: dict[str, list[ServedResource]] = {}
    for rtype in sorted(registry.all(), key=lambda t: (t.group, t.resource)):
        if (rtype.group == "") == core:
            groups.setdefault(rtype.group, []).append(rtype)
    return groups


def _verbs(rtype: ServedResource) -> list[str]:
    return ["create"] if rtype.review else list(ALL_VERBS)


def _aggregated_resource(rtype: ServedResource, version: str) -> dict[str, Any]:
    kind = {"group": rtype.group, "version": version, "kind": rtype.kind}
    entry: dict[str, Any] = {
        "resource": rtype.resource, "responseKind": kind,
        "scope": "Namespaced" if rtype.namespaced else "Cluster",
        "singularResource": rtype.singular, "verbs": _verbs(rtype),
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    if rtype.subresources:
        entry["subresources"] = [{"subresource": sub, "responseKind": kind, "verbs": ["get", "patch", "update"]}
                                 for sub in sorted(rtype.subresources)]
    return entry


def aggregated(registry: ResourceRegistry, core: bool) -> dict[str, Any]:
    items = []
    versions = registry.groups()
    for group, types in _by_group(registry, core).items():
        group_versions = []
        for version in versions[group]:
            resources = [_aggregated_resource(t, version) for t in types if version in t.versions]
            group_versions.append({"version": version, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": group_versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group(registry: ResourceRegistry, group: str) -> dict[str, Any] | None:
    versions = registry.groups().get(group)
    if not versions or not group:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0]}


def api_group_list(registry: ResourceRegistry) -> dict[str, Any]:
    groups = []
    for group in sorted(g for g in registry.groups() if g):
        info = api_group(registry, group)
        if info is not None:
            info.pop("kind")
            info.pop("apiVersion")
            groups.append(info)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    resources = []
    for rtype in sorted(registry.all(), key=lambda t: t.resource):
        if rtype.group != group or version not in rtype.versions:
            continue
        entry: dict[str, Any] = {"name": rtype.resource, "singularName": rtype.singular,
                                 "namespaced": rtype.namespaced, "kind": rtype.kind, "verbs": _verbs(rtype)}
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = list(rtype.categories)
        resources.append(entry)
        for sub in sorted(rtype.subresources):
            resources.append({"name": f"{rtype.resource}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                              "kind": rtype.kind, "verbs": ["get", "patch", "update"]})
    if not resources:
        return None
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


# --------------------------------------------------------------------------- OpenAPI v3

def openapi_index(registry: ResourceRegistry) -> dict[str, Any]:
    """The ``/openapi/v3`` index (built in :mod:`infergate.apiserver.openapi_v3`)."""
    return openapi_v3.index(registry)


def openapi_document(registry: ResourceRegistry, key: str) -> dict[str, Any] | None:
    """The document of one group-version key (``api/v1``, ``apis/G/V``), or None."""
    return openapi_v3.document(registry, key)
