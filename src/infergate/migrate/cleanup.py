"""``cleanup``: remove what is left of the preview API, in a safe order.

1. a cluster-wide census; refuse while a namespace outside the scope still has preview
   objects (deleting a CRD deletes every object of it, in every namespace), or an HTTPRoute in
   scope still sends traffic to a preview pool, unless ``--force``;
2. Helm releases holding preview objects, before the CRDs they need (after the CRD is gone,
   ``helm uninstall`` deletes the release record but none of its resources); a release whose
   CRD is already gone is recovered by deleting its other resources first;
3. preview pools, InferenceModels, v0.3.0 EPP Deployments and their Services;
4. objects held by finalizers are reported (a CR finalizer with no controller blocks the CRD's
   deletion); the CRDs are deleted only when none is left, unless ``--force``;
5. the preview CRDs of the v0.3.0 bundle (``config/crd/preview.yaml``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infergate.migrate.census import EPP, MODEL, POOL, ROUTE, scan_cluster, scan_objects
from infergate.migrate.cluster import Cluster, ClusterError
from infergate.migrate.exitcodes import EXIT_OK, EXIT_REFUSED
from infergate.migrate.helm import Helm, HelmError
from infergate.migrate.resources import (
    CRDS,
    DEPLOYMENTS,
    PREVIEW_MODELS,
    PREVIEW_POOLS,
    SERVICES,
    meta,
    name_of,
)

PREVIEW_BUNDLE = Path(__file__).resolve().parents[3] / "config" / "crd" / "preview.yaml"


def preview_census_blockers(cluster: Cluster, outside: set[str] | None = None) -> list[str]:
    """'<namespace>: N InferencePools, M InferenceModels' for every namespace (or those not in
    ``outside``'s complement) that still has preview objects."""
    counts: Counter[tuple[str, str]] = Counter()
    for resource in (PREVIEW_POOLS, PREVIEW_MODELS):
        for obj in cluster.list(resource, None):
            ns = str(meta(obj).get("namespace", ""))
            if outside is None or ns not in outside:
                counts[(ns, resource.qualified)] += 1
    by_ns: dict[str, list[str]] = {}
    for (ns, res), n in sorted(counts.items()):
        by_ns.setdefault(ns, []).append(f"{n} {res}")
    return [f"{ns}: {', '.join(items)}" for ns, items in by_ns.items()]


@dataclass
class CleanupResult:
    exit_code: int
    message: str
    actions: list[str] = field(default_factory=list)
    finalizers: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"exitCode": self.exit_code, "message": self.message, "actions": self.actions,
                "finalizers": self.finalizers, "refused": self.refused}


def cleanup(
    cluster: Cluster,
    helm: Helm | None,
    namespace: str | None,
    *,
    force: bool = False,
    dry_run: bool = False,
    bundle: Path = PREVIEW_BUNDLE,
    wait_s: float = 5.0,
) -> CleanupResult:
    census = scan_cluster(cluster, None)
    scope = {namespace} if namespace is not None else {f.namespace for f in census.findings if f.namespace}
    result = CleanupResult(EXIT_OK, "")
    outside = preview_census_blockers(cluster, outside=scope)
    routes = [f for f in census.findings if f.kind == ROUTE and f.namespace in scope]
    if outside:
        result.refused.append("other namespaces still use the preview CRDs (deleting them deletes these objects): "
                              + "; ".join(outside))
    if routes:
        result.refused.append("HTTPRoutes still send traffic to preview pools (migrate them first): "
                              + "; ".join(f"{f.namespace}/{f.name} ({f.detail})" for f in routes))
    if result.refused and not force:
        result.exit_code = EXIT_REFUSED
        result.message = "refused (use --force to delete anyway)"
        return result

    crds_present = {n for n in _bundle_crd_names(bundle) if cluster.get(CRDS, None, n) is not None}
    # 1. Helm releases before the CRDs.
    if helm is not None:
        try:
            releases = helm.releases(namespace)
        except HelmError as exc:
            releases = []
            result.actions.append(f"helm releases not listed: {exc}")
        for release in releases:
            try:
                objects = helm.manifest(release.name, release.namespace)
            except HelmError:
                continue
            preview = scan_objects(objects, "helm", release.namespace)
            if not preview:
                continue
            needed = {PREVIEW_POOLS.qualified if f.kind == POOL else PREVIEW_MODELS.qualified
                      for f in preview if f.kind in (POOL, MODEL)}
            for crd_name in sorted(needed - crds_present):
                # Orphan recovery: with the CRD gone helm cannot map the kind and refuses to uninstall
                # (Helm 3 dropped the release and kept its resources). Put the empty CRD back for the
                # uninstall; it is deleted again below.
                _apply_crd(cluster, bundle, crd_name, dry_run)
                crds_present.add(crd_name)
                result.actions.append(f"re-installed CustomResourceDefinition {crd_name} (deleted before "
                                      f"helm uninstall {release.name}) so that helm can uninstall the release")
            try:
                helm.uninstall(release.name, release.namespace, dry_run=dry_run)
                result.actions.append(f"helm uninstall {release.name} -n {release.namespace}")
            except HelmError as exc:
                result.actions.append(f"helm uninstall {release.name}: {exc}")
    # 2. Preview objects in scope.
    for ns in sorted(scope):
        for finding in scan_cluster(cluster, ns).findings:
            if finding.kind == POOL:
                pool = cluster.get(PREVIEW_POOLS, ns, finding.name)
                epp = ((pool or {}).get("spec") or {}).get("extensionRef") or {}
                if _delete(cluster, PREVIEW_POOLS, ns, finding.name, dry_run):
                    result.actions.append(f"deleted {PREVIEW_POOLS.qualified} {ns}/{finding.name}")
                if epp.get("name") and _delete(cluster, SERVICES, ns, str(epp["name"]), dry_run):
                    result.actions.append(f"deleted Service {ns}/{epp['name']} (preview EPP)")
            elif finding.kind == MODEL:
                if _delete(cluster, PREVIEW_MODELS, ns, finding.name, dry_run):
                    result.actions.append(f"deleted {PREVIEW_MODELS.qualified} {ns}/{finding.name}")
            elif finding.kind == EPP and _delete(cluster, DEPLOYMENTS, ns, finding.name, dry_run):
                result.actions.append(f"deleted Deployment {ns}/{finding.name} (v0.3.0 EPP)")
    # 3. Finalizers.
    deadline = time.monotonic() + (0 if dry_run else wait_s)
    while True:
        left = [obj for res in (PREVIEW_POOLS, PREVIEW_MODELS) for obj in cluster.list(res, None)
                if force or str(meta(obj).get("namespace")) in scope]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not dry_run:
        for obj in left:
            m = meta(obj)
            result.finalizers.append(f"{obj.get('kind')} {m.get('namespace')}/{m.get('name')}: finalizers "
                                     f"{m.get('finalizers') or []} (deletionTimestamp {m.get('deletionTimestamp')})")
    if result.finalizers and not force:
        result.exit_code = EXIT_REFUSED
        result.message = ("preview objects are held by finalizers that no controller removes; remove them "
                          "(kubectl patch ... -p '{\"metadata\":{\"finalizers\":null}}' --type merge) or pass --force; "
                          "the CRDs were not deleted")
        return result
    # 4. CRDs (the v0.3.0 bundle).
    for name in _bundle_crd_names(bundle):
        if _delete(cluster, CRDS, None, name, dry_run):
            result.actions.append(f"deleted CustomResourceDefinition {name}")
    result.message = "preview API removed" + (" (dry run: nothing changed)" if dry_run else "")
    return result


def _apply_crd(cluster: Cluster, bundle: Path, name: str, dry_run: bool) -> None:
    crd = next(d for d in yaml.safe_load_all(bundle.read_text()) if isinstance(d, dict) and name_of(d) == name)
    cluster.apply(CRDS, crd, dry_run=dry_run)
    deadline = time.monotonic() + 30
    while not dry_run and time.monotonic() < deadline:
        conditions = ((cluster.get(CRDS, None, name) or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        time.sleep(0.1)


def _bundle_crd_names(bundle: Path) -> list[str]:
    return [name_of(d) for d in yaml.safe_load_all(bundle.read_text())
            if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]


def _group(obj: dict[str, Any]) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _delete(cluster: Cluster, resource: Any, namespace: str | None, name: str, dry_run: bool) -> bool:
    try:
        return cluster.delete(resource, namespace, name, dry_run=dry_run)
    except ClusterError as exc:
        if exc.status == 404:
            return False
        raise
