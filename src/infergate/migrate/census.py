"""Where the preview API is still used: the live cluster, manifest files, Helm releases.

Counts are kept per source, group, kind and namespace, never by the ambiguous bare
``inferencepools`` (both CRDs serve that plural, migration.md §9 case 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from infergate.api.conversion.constants import GA_GROUP, PREVIEW_GROUP
from infergate.migrate.cluster import Cluster, ClusterError
from infergate.migrate.helm import Helm, HelmError, Release
from infergate.migrate.resources import (
    CRDS,
    DEPLOYMENTS,
    GA_POOLS,
    HTTPROUTES,
    OBJECTIVES,
    PREVIEW_CRD_NAMES,
    PREVIEW_MODELS,
    PREVIEW_POOLS,
    Obj,
    meta,
    name_of,
    namespace_of,
)

# Finding kinds (what the preview use is).
POOL = "InferencePool"
MODEL = "InferenceModel"
ROUTE = "HTTPRoute"
EPP = "EPPDeployment"
RELEASE = "HelmRelease"
CRD = "CustomResourceDefinition"
# Kinds of the moves after preview -> GA (generations.py finds them).
XK8S_OBJECTIVE = "XK8sInferenceObjective"
XK8S_REWRITE = "XK8sInferenceModelRewrite"
TARGET_SPLIT = "TargetModelsSplit"
CHART_VALUES = "ChartValuesV1.0"
CRD_UPGRADE_BLOCKED = "CRDUpgradeBlocked"
_LATER_MOVE_LABELS = {
    XK8S_OBJECTIVE: "inferenceobjectives.inference.networking.x-k8s.io -> inferenceobjectives.llm-d.ai",
    XK8S_REWRITE: "inferencemodelrewrites.inference.networking.x-k8s.io -> inferencemodelrewrites.llm-d.ai",
    TARGET_SPLIT: "inferencemodels.inference.networking.x-k8s.io targetModels -> InferenceModelRewrite",
    CHART_VALUES: "helm release (inferencepool chart values v1.0 -> v1.5)",
    CRD_UPGRADE_BLOCKED: "inferencepools.inference.networking.x-k8s.io (blocks CRDs v1.5+)",
}


@dataclass(frozen=True, order=True)
class Finding:
    """One use of the preview API."""

    source: str  # "cluster", "file:<path>", "helm"
    kind: str  # POOL, MODEL, ROUTE, EPP, RELEASE, CRD
    group: str  # the API group of the object (the resource's group for ROUTE/EPP/RELEASE: what it uses)
    namespace: str
    name: str
    detail: str = ""
    finalizers: tuple[str, ...] = ()
    optional: bool = False  # a move that could be made, nothing breaks without it (generations.py)


@dataclass(frozen=True)
class CrdState:
    name: str
    installed: bool
    versions: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    bundle_version: str = ""


@dataclass(frozen=True)
class Census:
    findings: tuple[Finding, ...]
    crds: tuple[CrdState, ...] = ()
    ga_counts: tuple[tuple[str, str, int], ...] = ()  # (resource, namespace, count) of GA objects seen
    errors: tuple[str, ...] = ()

    @property
    def migration_needed(self) -> bool:
        return any(f.kind != CRD and not f.optional for f in self.findings)

    def counts(self) -> list[tuple[str, str, str, str, int]]:
        """(source, resource, namespace, kind, count) rows, resource fully qualified."""
        counter: Counter[tuple[str, str, str, str]] = Counter()
        for f in self.findings:
            source = f.source.split(":", 1)[0]
            counter[(source, _resource_label(f), f.namespace, f.kind)] += 1
        return [(s, r, ns, k, n) for (s, r, ns, k), n in sorted(counter.items())]

    def namespaces_using_preview(self) -> set[str]:
        return {f.namespace for f in self.findings if f.source == "cluster" and f.kind in (POOL, MODEL)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "migrationNeeded": self.migration_needed,
            "counts": [{"source": s, "resource": r, "namespace": ns, "kind": k, "count": n}
                       for s, r, ns, k, n in self.counts()],
            "findings": [{"source": f.source, "kind": f.kind, "group": f.group, "namespace": f.namespace,
                          "name": f.name, "detail": f.detail, "finalizers": list(f.finalizers),
                          "optional": f.optional}
                         for f in self.findings],
            "crds": [{"name": c.name, "installed": c.installed, "versions": list(c.versions),
                      "shortNames": list(c.short_names), "bundleVersion": c.bundle_version} for c in self.crds],
            "ga": [{"resource": r, "namespace": ns, "count": n} for r, ns, n in self.ga_counts],
            "errors": list(self.errors),
        }


def _resource_label(f: Finding) -> str:
    if f.kind == POOL:
        return PREVIEW_POOLS.qualified
    if f.kind == MODEL:
        return PREVIEW_MODELS.qualified
    if f.kind == ROUTE:
        return f"{HTTPROUTES.qualified} -> {PREVIEW_POOLS.qualified}"
    if f.kind == EPP:
        return f"{DEPLOYMENTS.qualified} (v0.3.0 EPP)"
    if f.kind == RELEASE:
        return "helm release"
    if f.kind in _LATER_MOVE_LABELS:
        return _LATER_MOVE_LABELS[f.kind]
    return CRDS.qualified


# -- classification of single objects (shared by cluster, files and Helm manifests) -------------------


def _at(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None where a step is missing or not an object (files may hold anything)."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list value; nothing for a missing or malformed one."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def preview_backend_refs(route: Obj) -> list[str]:
    """Names of the preview InferencePools an HTTPRoute's rules send traffic to."""
    names: list[str] = []
    for rule in _objects(_at(route, "spec", "rules")):
        for ref in _objects(rule.get("backendRefs")):
            if ref.get("group") == PREVIEW_GROUP and ref.get("kind", "Service") == "InferencePool":
                names.append(str(ref.get("name")))
    return names


def preview_epp_pool(obj: Obj) -> str | None:
    """The pool a v0.3.0 EPP Deployment serves (``-poolName X``), or one whose ``--pool-group`` is x-k8s."""
    if obj.get("kind") != "Deployment":
        return None
    for container in _objects(_at(obj, "spec", "template", "spec", "containers")):
        args = [str(a) for field in ("args", "command") for a in _list(container.get(field))]
        flags = _flags(args)
        for key in ("poolName", "pool-name"):
            if key in flags and (key == "poolName" or flags.get("pool-group") == PREVIEW_GROUP):
                return flags[key]
    return None


def _flags(args: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            key = arg.lstrip("-")
            if "=" in key:
                key, value = key.split("=", 1)
                out[key] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                out[key] = args[i + 1]
                i += 1
            else:
                out[key] = ""
        i += 1
    return out


def classify(obj: Obj, source: str, default_namespace: str = "default") -> Finding | None:
    """The preview use ``obj`` is, or None."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    kind = obj.get("kind")
    ns = namespace_of(obj, default_namespace)
    finalizers = tuple(str(f) for f in _list(meta(obj).get("finalizers")))
    if group == PREVIEW_GROUP and kind == "InferencePool":
        return Finding(source, POOL, group, ns, name_of(obj), api_version, finalizers)
    if group == PREVIEW_GROUP and kind == "InferenceModel":
        detail = f"modelName {_at(obj, 'spec', 'modelName')}, pool {_at(obj, 'spec', 'poolRef', 'name')}"
        return Finding(source, MODEL, group, ns, name_of(obj), detail, finalizers)
    if kind == "HTTPRoute":
        pools = preview_backend_refs(obj)
        if pools:
            return Finding(source, ROUTE, PREVIEW_GROUP, ns, name_of(obj),
                           "backendRefs to " + ", ".join(sorted(set(pools))))
    pool = preview_epp_pool(obj)
    if pool is not None:
        return Finding(source, EPP, PREVIEW_GROUP, ns, name_of(obj), f"serves preview pool {pool}")
    return None


# -- sources -------------------------------------------------------------------------------------------


def scan_objects(objects: Iterable[Obj], source: str, default_namespace: str = "default") -> list[Finding]:
    out = []
    for obj in objects:
        finding = classify(obj, source, default_namespace)
        if finding is not None:
            out.append(finding)
    return out


def crd_states(cluster: Cluster) -> list[CrdState]:
    states = []
    for name in (*PREVIEW_CRD_NAMES, GA_POOLS.qualified, OBJECTIVES.qualified):
        crd = cluster.get(CRDS, None, name)
        if crd is None:
            states.append(CrdState(name, False))
            continue
        spec = crd.get("spec") or {}
        annotations = meta(crd).get("annotations") or {}
        states.append(CrdState(
            name, True,
            tuple(str(v.get("name")) for v in spec.get("versions") or [] if v.get("served", True)),
            tuple(str(s) for s in (spec.get("names") or {}).get("shortNames") or []),
            str(annotations.get(f"{GA_GROUP}/bundle-version", "")),
        ))
    return states


def scan_cluster(cluster: Cluster, namespace: str | None) -> Census:
    """The live cluster: ``namespace`` or all namespaces (None)."""
    findings: list[Finding] = []
    errors: list[str] = []
    crds = crd_states(cluster)
    for name in PREVIEW_CRD_NAMES:
        state = next(c for c in crds if c.name == name)
        if state.installed:
            findings.append(Finding("cluster", CRD, "apiextensions.k8s.io", "", name,
                                    "served versions " + ",".join(state.versions)))
    listed: dict[str, list[Obj]] = {}
    for resource in (PREVIEW_POOLS, PREVIEW_MODELS, HTTPROUTES, DEPLOYMENTS):
        try:
            listed[resource.plural] = cluster.list(resource, namespace)
            findings.extend(scan_objects(listed[resource.plural], "cluster"))
        except ClusterError as exc:
            errors.append(f"list {resource.qualified}: {exc}")
    findings.extend(wrong_group_epps(listed.get("deployments", []), listed.get("inferencepools", []), cluster))
    ga: Counter[tuple[str, str]] = Counter()
    for resource in (GA_POOLS, OBJECTIVES):
        try:
            for obj in cluster.list(resource, namespace):
                ga[(resource.qualified, namespace_of(obj))] += 1
        except ClusterError as exc:
            errors.append(f"list {resource.qualified}: {exc}")
    return Census(tuple(sorted(findings)), tuple(crds), tuple((r, ns, n) for (r, ns), n in sorted(ga.items())),
                  tuple(errors))


def wrong_group_epps(deployments: list[Obj], preview_pools: list[Obj], cluster: Cluster) -> list[Finding]:
    """v1.0 EPPs (``--pool-name P``, no ``--pool-group``) whose pool P exists only in the preview
    group: they watch inference.networking.k8s.io and find no pool (the v1.0.0 chart installed
    with ``inferencePool.apiVersion`` x-k8s passes no ``--pool-group``; migration.md §9 case 9)."""
    preview = {(namespace_of(p), name_of(p)) for p in preview_pools}
    out = []
    for dep in deployments:
        containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        for container in containers:
            flags = _flags([str(a) for a in (container.get("args") or []) + (container.get("command") or [])])
            pool = flags.get("pool-name")
            ns = namespace_of(dep)
            if pool and "pool-group" not in flags and (ns, pool) in preview \
                    and cluster.get(GA_POOLS, ns, pool) is None:
                out.append(Finding("cluster", EPP, PREVIEW_GROUP, ns, name_of(dep),
                                   f"--pool-name {pool} without --pool-group: watches {GA_GROUP}, but {pool} is a "
                                   f"preview pool (set --pool-group {PREVIEW_GROUP}; chart v1.0.0 trap)"))
    return out


def scan_releases(helm: Helm, namespace: str | None,
                  scan: Callable[[Release], Finding | None]) -> tuple[list[Finding], list[str]]:
    """``scan`` of each Helm release in ``namespace`` (None: all): the findings, and the Helm
    errors (listing the releases, or one release's ``scan``) that left something unread."""
    try:
        releases = helm.releases(namespace)
    except HelmError as exc:
        return [], [str(exc)]
    findings: list[Finding] = []
    errors: list[str] = []
    for release in releases:
        try:
            found = scan(release)
        except HelmError as exc:
            errors.append(str(exc))
            continue
        if found is not None:
            findings.append(found)
    return findings, errors


def scan_helm(helm: Helm, namespace: str | None) -> tuple[list[Finding], list[str]]:
    """Releases whose current manifest holds preview objects (or a v0.3.0 EPP)."""

    def scan(release: Release) -> Finding | None:
        inner = scan_objects(helm.manifest(release.name, release.namespace), "helm", release.namespace)
        if not inner:
            return None
        what = ", ".join(sorted({f"{f.kind} {f.name}" for f in inner}))
        return Finding("helm", RELEASE, PREVIEW_GROUP, release.namespace, release.name, f"chart {release.chart}: {what}")

    return scan_releases(helm, namespace, scan)


def merge(*parts: Census, extra: Sequence[Finding] = (), errors: Sequence[str] = ()) -> Census:
    findings = [f for p in parts for f in p.findings] + list(extra)
    crds = next((p.crds for p in parts if p.crds), ())
    ga = next((p.ga_counts for p in parts if p.ga_counts), ())
    errs = [e for p in parts for e in p.errors] + list(errors)
    return Census(tuple(sorted(set(findings))), crds, ga, tuple(errs))


@dataclass
class CensusOptions:
    namespace: str | None = None  # None: all namespaces
    files: list[str] = field(default_factory=list)
    helm: bool = True
