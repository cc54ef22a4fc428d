"""The moves after preview -> GA that `migrate check` reports, each as its own kind of finding.

=========================  ==========================================================  ===============
move                       what is pending                                             how
=========================  ==========================================================  ===============
``preview-to-ga``          preview InferencePools / InferenceModels (census.py)        ``migrate run``
``x-k8s-to-llm-d``         InferenceObjective / InferenceModelRewrite in               ``migrate llm-d``
                           inference.networking.x-k8s.io (GIE v1.0-v1.5)
``target-models-rewrite``  a preview InferenceModel whose ``targetModels`` splits      ``--target-models
                           traffic: it can become an InferenceModelRewrite             rewrite``
``chart-values-v1.5``      a Helm release of the inferencepool chart with v1.0-style   ``migrate
                           values                                                      chart-values``
=========================  ==========================================================  ===============

Findings of a move that could be made but need not be are ``optional`` ("available": they do
not make `check` exit 3): the target-models and chart-values moves always, the x-k8s move unless
the llm-d.ai CRDs are installed (an EPP then reads only llm-d.ai and ignores the x-k8s objects).

And one **blocker**: CRDs must not be upgraded to GIE v1.5+ (which removed the preview
InferencePool CRD, PR #2796) while preview InferencePools remain: ``crds-v1.5-blocked``, one
finding naming every such pool. ``migrate crds-check`` refuses with exit 6 on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from infergate.kube import kinds
from infergate.kube.kinds import Kind
from infergate.migrate.census import (
    CHART_VALUES,
    CRD_UPGRADE_BLOCKED,
    POOL,
    TARGET_SPLIT,
    XK8S_OBJECTIVE,
    XK8S_REWRITE,
    Census,
    Finding,
    scan_releases,
)
from infergate.migrate.chart_values import v1_markers
from infergate.migrate.cluster import Cluster, ClusterError
from infergate.migrate.helm import Helm, Release
from infergate.migrate.resources import (
    CRDS,
    MODEL_REWRITES,
    OBJECTIVES,
    PREVIEW_POOLS,
    Obj,
    name_of,
    namespace_of,
)

LLMD_GROUP: Final = "llm-d.ai"
XK8S_GROUP: Final = kinds.PREVIEW_GROUP
LLMD_OBJECTIVES: Final = kinds.get(LLMD_GROUP, "InferenceObjective")
LLMD_MODEL_REWRITES: Final = kinds.get(LLMD_GROUP, "InferenceModelRewrite")
# x-k8s kind -> its llm-d.ai counterpart
LLMD_OF: Final[dict[Kind, Kind]] = {OBJECTIVES: LLMD_OBJECTIVES, MODEL_REWRITES: LLMD_MODEL_REWRITES}

# Moves (what `check` groups the findings by)
PREVIEW_TO_GA: Final = "preview-to-ga"
XK8S_TO_LLMD: Final = "x-k8s-to-llm-d"
TARGET_MODELS_REWRITE: Final = "target-models-rewrite"
CHART_VALUES_V15: Final = "chart-values-v1.5"
CRDS_V15_BLOCKED: Final = "crds-v1.5-blocked"

MOVE_OF_KIND: Final[dict[str, str]] = {
    XK8S_OBJECTIVE: XK8S_TO_LLMD,
    XK8S_REWRITE: XK8S_TO_LLMD,
    TARGET_SPLIT: TARGET_MODELS_REWRITE,
    CHART_VALUES: CHART_VALUES_V15,
    CRD_UPGRADE_BLOCKED: CRDS_V15_BLOCKED,
}
HOW: Final[dict[str, str]] = {
    PREVIEW_TO_GA: "infergate migrate run -n NS",
    XK8S_TO_LLMD: "infergate migrate llm-d -n NS --install-crds",
    TARGET_MODELS_REWRITE: "infergate migrate run -n NS --target-models rewrite",
    CHART_VALUES_V15: "helm get values R -n NS -o yaml | infergate migrate chart-values -f -",
    CRDS_V15_BLOCKED: "finish preview-to-ga (and `migrate cleanup`) before installing GIE v1.5+ CRDs",
}


def move_of(finding: Finding) -> str:
    """The move a finding belongs to (everything census.py finds is preview -> GA)."""
    return MOVE_OF_KIND.get(finding.kind, PREVIEW_TO_GA)


def is_blocking(finding: Finding) -> bool:
    return finding.kind == CRD_UPGRADE_BLOCKED


def pending_moves(census: Census) -> dict[str, int]:
    """Findings per move (optional ones included), preview CRDs themselves not counted."""
    out: dict[str, int] = {}
    for f in census.findings:
        if f.kind == "CustomResourceDefinition":
            continue
        move = move_of(f)
        out[move] = out.get(move, 0) + 1
    return dict(sorted(out.items()))


def optional_moves(census: Census) -> set[str]:
    """The moves all of whose findings are optional: they could be made, nothing breaks without
    them, and they do not make `check` exit 3."""
    moves: dict[str, bool] = {}
    for f in census.findings:
        if f.kind != "CustomResourceDefinition":
            moves[move_of(f)] = moves.get(move_of(f), True) and f.optional
    return {m for m, optional in moves.items() if optional}


# -- single objects -----------------------------------------------------------------------------------


def target_split(model: Obj) -> list[tuple[str, int]]:
    """The (model, weight) split of a preview InferenceModel, when it names several targets."""
    targets = (model.get("spec") or {}).get("targetModels") if isinstance(model.get("spec"), dict) else None
    if not isinstance(targets, list):
        return []
    split = [(str(t.get("name")), _weight(t.get("weight", 1))) for t in targets if isinstance(t, dict)]
    return split if len({name for name, _ in split}) > 1 else []


def _weight(value: Any) -> int:
    """A targetModels weight as written; files may hold anything (then 1, as unweighted)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def classify_generation(obj: Obj, source: str, default_namespace: str = "default", *,
                        llmd_installed: bool = False) -> Finding | None:
    """The post-GA move ``obj`` could or must make, or None. x-k8s objectives and rewrites are
    optional unless ``llmd_installed`` (the llm-d.ai CRDs exist: an EPP then ignores them)."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    kind = obj.get("kind")
    ns = namespace_of(obj, default_namespace)
    if group == XK8S_GROUP and kind in ("InferenceObjective", "InferenceModelRewrite"):
        target = LLMD_OBJECTIVES if kind == "InferenceObjective" else LLMD_MODEL_REWRITES
        detail = f"copy to {target.api_version}"
        if llmd_installed:
            detail = f"the llm-d.ai CRDs are installed, so an EPP reads only llm-d.ai and ignores this object: {detail}"
        return Finding(source, XK8S_OBJECTIVE if kind == "InferenceObjective" else XK8S_REWRITE, group, ns,
                       name_of(obj), detail, optional=not llmd_installed)
    if group == XK8S_GROUP and kind == "InferenceModel":
        split = target_split(obj)
        if split:
            return Finding(source, TARGET_SPLIT, group, ns, name_of(obj),
                           "targetModels " + ", ".join(f"{n} {w}" for n, w in split)
                           + f": can become an {MODEL_REWRITES.kind} (--target-models rewrite)", optional=True)
    return None


def scan_generation_objects(objects: Iterable[Obj], source: str, default_namespace: str = "default", *,
                            llmd_installed: bool = False) -> list[Finding]:
    return [f for f in (classify_generation(o, source, default_namespace, llmd_installed=llmd_installed)
                        for o in objects) if f is not None]


def crd_blocker(preview_pools: Sequence[Obj] | Sequence[Finding]) -> Finding | None:
    """The blocking finding naming every remaining preview InferencePool (None: none remain)."""
    names = sorted(f"{p.namespace}/{p.name}" if isinstance(p, Finding) else f"{namespace_of(p)}/{name_of(p)}"
                   for p in preview_pools)
    if not names:
        return None
    return Finding("cluster", CRD_UPGRADE_BLOCKED, PREVIEW_POOLS.group, "", "gie-v1.5+ CRDs",
                   f"GIE v1.5+ CRDs remove {PREVIEW_POOLS.qualified}; preview InferencePools remain: "
                   + ", ".join(names) + " (migrate them to GA first)")


# -- sources ------------------------------------------------------------------------------------------


def scan_cluster_generations(cluster: Cluster, namespace: str | None, census: Census) -> tuple[list[Finding], list[str]]:
    """x-k8s objectives and rewrites, targetModels splits, and the CRD blocker (from the
    preview pools ``census`` found in the cluster)."""
    findings: list[Finding] = []
    errors: list[str] = []
    llmd = cluster.get(CRDS, None, LLMD_OBJECTIVES.qualified) is not None
    for resource in (OBJECTIVES, MODEL_REWRITES, kinds.PREVIEW_MODELS):
        try:
            findings += scan_generation_objects(cluster.list(resource, namespace), "cluster", llmd_installed=llmd)
        except ClusterError as exc:
            errors.append(f"list {resource.qualified}: {exc}")
    blocker = crd_blocker([f for f in census.findings if f.source == "cluster" and f.kind == POOL])
    if blocker is not None:
        findings.append(blocker)
    return findings, errors


def is_inferencepool_chart(chart: str) -> bool:
    """``inferencepool-v1.0.0`` (helm list's chart column) and the like."""
    return chart.rsplit("-", 1)[0] == "inferencepool" or chart == "inferencepool"


def chart_default_failure_mode(chart: str) -> str:
    """The default ``failureMode`` of the inferencepool chart ``chart`` (helm list's column):
    FailOpen for infergate's ``charts/inferencepool`` (versions 0.x, no ``v``) and upstream's
    since v1.4; FailClose for upstream's earlier ones (and a version that cannot be read)."""
    version = chart.rsplit("-", 1)[-1] if "-" in chart else ""
    upstream = version.startswith("v")
    parts = version.lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return "FailClose"
    if not upstream:
        return "FailOpen" if major == 0 else "FailClose"
    return "FailOpen" if (major, minor) >= (1, 4) else "FailClose"


def scan_helm_values(helm: Helm, namespace: str | None) -> tuple[list[Finding], list[str]]:
    """Releases of the inferencepool chart whose user values use the v1.0 layout."""

    def scan(release: Release) -> Finding | None:
        if not is_inferencepool_chart(release.chart):
            return None
        values: Any = helm.values(release.name, release.namespace)
        markers = v1_markers(values if isinstance(values, dict) else {})
        if not markers:
            return None
        detail = f"chart {release.chart}: v1.0 keys " + ", ".join(markers)
        if chart_default_failure_mode(release.chart) == "FailOpen":
            detail += "; its chart defaults to FailOpen: convert with --unset-failure-mode FailOpen"
        return Finding("helm", CHART_VALUES, "", release.namespace, release.name, detail, optional=True)

    return scan_releases(helm, namespace, scan)


# GIE releases whose CRDs no longer serve the preview InferencePool (PR #2796)
CRD_TARGETS: Final = ("v1.0", "v1.5", "v1.6", "current")
_WITHOUT_PREVIEW_POOL: Final = frozenset({"v1.5", "v1.6", "current"})


def crd_upgrade_blockers(cluster: Cluster, target: str) -> list[str]:
    """The preview InferencePools (``namespace/name``, every namespace) that forbid installing the
    CRDs of GIE ``target``; empty when ``target`` still serves them or none remain."""
    if target not in CRD_TARGETS:
        raise ValueError(f"target {target!r}: one of {', '.join(CRD_TARGETS)}")
    if target not in _WITHOUT_PREVIEW_POOL:
        return []
    return sorted(f"{namespace_of(p)}/{name_of(p)}" for p in cluster.list(PREVIEW_POOLS, None))
