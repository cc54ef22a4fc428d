"""``cleanup``: remove what is left of the preview API, in a safe order.

1. a cluster-wide census; refuse while a namespace outside the scope still has preview
   objects (deleting a CRD deletes every object of it, in every namespace), or an HTTPRoute in
   scope still sends traffic to a preview pool, unless ``--force``;
2. Helm releases holding preview objects, before the CRDs they need (after the CRD is gone,
   ``helm uninstall`` deletes the release record but none of its resources); for a release whose
   CRD is already gone, the empty CRD is put back for the uninstall;
3. preview pools, InferenceModels, v0.3.0 EPP Deployments and their Services;
4. objects held by finalizers are reported (a CR finalizer with no controller blocks the CRD's
   deletion); the CRDs are deleted only when none is left, unless ``--force``;
5. the preview CRDs of the v0.3.0 bundle (``config/crd/preview.yaml``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infergate.api import yamlload
from infergate.migrate.census import EPP, MODEL, POOL, ROUTE, Census, scan_cluster, scan_objects
from infergate.migrate.cluster import Cluster, ClusterError
from infergate.migrate.exitcodes import EXIT_OK, EXIT_REFUSED
from infergate.migrate.helm import Helm, HelmError
from infergate.migrate.resources import (
    CRDS,
    DEPLOYMENTS,
    PREVIEW_MODELS,
    PREVIEW_POOLS,
    SERVICES,
    Obj,
    meta,
    name_of,
)
from infergate.util.wait import WaitTimeout, wait_until

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


FINALIZER_WAIT_S = 5.0  # how long step 4 waits for the deleted preview objects to go (tests shorten it)


def cleanup(
    cluster: Cluster,
    helm: Helm | None,
    namespace: str | None,
    *,
    force: bool = False,
    dry_run: bool = False,
    bundle: Path = PREVIEW_BUNDLE,
    wait_s: float | None = None,
) -> CleanupResult:
    """The steps of the module docstring, in order; ``namespace`` None: every namespace with
    preview objects; ``wait_s`` None: FINALIZER_WAIT_S."""
    census = scan_cluster(cluster, None)
    scope = {namespace} if namespace is not None else {f.namespace for f in census.findings if f.namespace}
    result = CleanupResult(EXIT_OK, "")
    result.refused = refusals(cluster, census, scope)
    if result.refused and not force:
        result.exit_code = EXIT_REFUSED
        result.message = "refused (use --force to delete anyway)"
        return result
    crds_present = {n for n in _bundle_crd_names(bundle) if cluster.get(CRDS, None, n) is not None}
    if helm is not None:
        result.actions += uninstall_preview_releases(cluster, helm, namespace, bundle, crds_present, dry_run=dry_run)
    result.actions += delete_preview_objects(cluster, scope, dry_run=dry_run)
    result.finalizers = held_by_finalizers(cluster, scope, force=force, dry_run=dry_run,
                                           wait_s=FINALIZER_WAIT_S if wait_s is None else wait_s)
    if result.finalizers and not force:
        result.exit_code = EXIT_REFUSED
        result.message = ("preview objects are held by finalizers that no controller removes; remove them "
                          "(kubectl patch ... -p '{\"metadata\":{\"finalizers\":null}}' --type merge) or pass --force; "
                          "the CRDs were not deleted")
        return result
    result.actions += delete_preview_crds(cluster, bundle, dry_run=dry_run)
    result.message = "preview API removed" + (" (dry run: nothing changed)" if dry_run else "")
    return result


def refusals(cluster: Cluster, census: Census, scope: set[str]) -> list[str]:
    """Step 1: why deleting the preview API now would break something (empty: nothing would)."""
    refused: list[str] = []
    outside = preview_census_blockers(cluster, outside=scope)
    routes = [f for f in census.findings if f.kind == ROUTE and f.namespace in scope]
    if outside:
        refused.append("other namespaces still use the preview CRDs (deleting them deletes these objects): "
                       + "; ".join(outside))
    if routes:
        refused.append("HTTPRoutes still send traffic to preview pools (migrate them first): "
                       + "; ".join(f"{f.namespace}/{f.name} ({f.detail})" for f in routes))
    return refused


def uninstall_preview_releases(cluster: Cluster, helm: Helm, namespace: str | None, bundle: Path,
                               crds_present: set[str], *, dry_run: bool) -> list[str]:
    """Step 2: ``helm uninstall`` every release (of ``namespace``, or of all) that holds preview
    objects, while their CRDs exist; a CRD deleted too early is put back first (``crds_present``
    gains it)."""
    actions: list[str] = []
    try:
        releases = helm.releases(namespace)
    except HelmError as exc:
        return [f"helm releases not listed: {exc}"]
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
            # uninstall; it is deleted again in the last step.
            _apply_crd(cluster, bundle, crd_name, dry_run)
            crds_present.add(crd_name)
            actions.append(f"re-installed CustomResourceDefinition {crd_name} (deleted before "
                           f"helm uninstall {release.name}) so that helm can uninstall the release")
        try:
            helm.uninstall(release.name, release.namespace, dry_run=dry_run)
            actions.append(f"helm uninstall {release.name} -n {release.namespace}")
        except HelmError as exc:
            actions.append(f"helm uninstall {release.name}: {exc}")
    return actions


def delete_preview_objects(cluster: Cluster, scope: set[str], *, dry_run: bool) -> list[str]:
    """Step 3: preview pools (with their EPP Services), InferenceModels and v0.3.0 EPP Deployments
    in the namespaces of ``scope``."""
    actions: list[str] = []
    for ns in sorted(scope):
        for finding in scan_cluster(cluster, ns).findings:
            if finding.kind == POOL:
                pool = cluster.get(PREVIEW_POOLS, ns, finding.name)
                epp = ((pool or {}).get("spec") or {}).get("extensionRef") or {}
                if _delete(cluster, PREVIEW_POOLS, ns, finding.name, dry_run):
                    actions.append(f"deleted {PREVIEW_POOLS.qualified} {ns}/{finding.name}")
                if epp.get("name") and _delete(cluster, SERVICES, ns, str(epp["name"]), dry_run):
                    actions.append(f"deleted Service {ns}/{epp['name']} (preview EPP)")
            elif finding.kind == MODEL:
                if _delete(cluster, PREVIEW_MODELS, ns, finding.name, dry_run):
                    actions.append(f"deleted {PREVIEW_MODELS.qualified} {ns}/{finding.name}")
            elif finding.kind == EPP and _delete(cluster, DEPLOYMENTS, ns, finding.name, dry_run):
                actions.append(f"deleted Deployment {ns}/{finding.name} (v0.3.0 EPP)")
    return actions


def held_by_finalizers(cluster: Cluster, scope: set[str], *, force: bool, dry_run: bool,
                       wait_s: float) -> list[str]:
    """Step 4: the preview objects still there after ``wait_s`` (of ``scope``, or anywhere with
    ``force``), each with its finalizers; none under a dry run, which deletes nothing."""
    left: list[Obj] = []

    def gone() -> bool:
        nonlocal left
        left = [obj for res in (PREVIEW_POOLS, PREVIEW_MODELS) for obj in cluster.list(res, None)
                if force or str(meta(obj).get("namespace")) in scope]
        return not left

    with contextlib.suppress(WaitTimeout):
        wait_until(gone, 0 if dry_run else wait_s, interval=0.2, what="the preview objects to go")
    if dry_run:
        return []
    held = []
    for obj in left:
        m = meta(obj)
        held.append(f"{obj.get('kind')} {m.get('namespace')}/{m.get('name')}: finalizers "
                    f"{m.get('finalizers') or []} (deletionTimestamp {m.get('deletionTimestamp')})")
    return held


def delete_preview_crds(cluster: Cluster, bundle: Path, *, dry_run: bool) -> list[str]:
    """Step 5: the CRDs of the v0.3.0 bundle."""
    return [f"deleted CustomResourceDefinition {name}" for name in _bundle_crd_names(bundle)
            if _delete(cluster, CRDS, None, name, dry_run)]


def _apply_crd(cluster: Cluster, bundle: Path, name: str, dry_run: bool) -> None:
    """Install one CRD of ``bundle`` and wait (bounded, 30 s) until it is Established."""
    crd = next(d for d in yamlload.load_all(bundle.read_text()) if isinstance(d, dict) and name_of(d) == name)
    cluster.apply(CRDS, crd, dry_run=dry_run)
    if dry_run:
        return

    def established() -> bool:
        conditions = ((cluster.get(CRDS, None, name) or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    with contextlib.suppress(WaitTimeout):  # helm's uninstall then reports what is still missing
        wait_until(established, 30.0, interval=0.1, what=f"CRD {name} Established")


def _bundle_crd_names(bundle: Path) -> list[str]:
    return [name_of(d) for d in yamlload.load_all(bundle.read_text())
            if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]


def _delete(cluster: Cluster, resource: Any, namespace: str | None, name: str, dry_run: bool) -> bool:
    try:
        return cluster.delete(resource, namespace, name, dry_run=dry_run)
    except ClusterError as exc:
        if exc.status == 404:
            return False
        raise
