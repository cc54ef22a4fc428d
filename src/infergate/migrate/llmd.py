"""x-k8s InferenceObjective / InferenceModelRewrite -> llm-d.ai, without downtime.

GIE v1.0-v1.5 served InferenceObjective and InferenceModelRewrite as
``inference.networking.x-k8s.io/v1alpha2``; they now live in the llm-d router as
``llm-d.ai/v1alpha2`` with the same spec. An EPP (infergate's, the llm-d router's) reads only
``llm-d.ai`` once its CRDs are installed. The move:

1. ``precheck``: the llm-d.ai CRDs are served (or, with ``install_crds``, ``install-crds``
   applies infergate's and waits until they are served); no llm-d.ai object of the same name
   with another spec exists (refused: exit 6);
2. ``copy``: each x-k8s object is applied as an llm-d.ai copy (same name, labels, spec; the
   annotation :data:`COPIED_FROM` marks it as the migration's) -- both are served now, and
   the EPP already prefers the copies. Rewrites first: the llm-d router's EPP reads only llm-d.ai
   from the moment its CRDs exist, so until the copies land it applies no rewrite (a request for a
   model name no pod serves then fails) and no objective (a request loses its priority only);
   infergate's EPP keeps the x-k8s objects until the first copy arrives (or for 2 s:
   ``epp.sources.kubernetes.LATE_CRD_GRACE_S``, below ``switch_grace_s``);
3. ``verify-copies``: each copy reads back with the original's spec;
4. ``verify-epp`` (with a probe, :mod:`infergate.migrate.llmd_probe`): first that the EPP reads
   llm-d.ai at all -- it admits requests naming :data:`PROBE_OBJECTIVE`, an InferenceObjective
   the run creates there only (the copies have the originals' names and priorities, so they
   cannot tell which group the EPP reads) --, then that it admits requests naming each
   objective with its priority. Without a probe, ``wait-switch`` waits until the llm-d.ai CRDs
   are ``switch_grace_s`` old (an EPP notices new CRDs by polling: infergate's every second);
5. ``delete-old``: the x-k8s objects are deleted. Before the EPP reads llm-d.ai they are what it
   serves: deleted earlier, it would apply no rewrite until it switched.

A failed verification deletes the copies again (the x-k8s objects were never touched).
:func:`rollback` undoes a finished move: it restores any deleted x-k8s object from its copy,
then deletes the copies.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from infergate.api import crds
from infergate.kube.kinds import Kind
from infergate.migrate.cluster import Cluster, ClusterError
from infergate.migrate.exitcodes import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, EXIT_ROLLED_BACK
from infergate.migrate.generations import LLMD_OF
from infergate.migrate.resources import CRDS, MODEL_REWRITES, OBJECTIVES, Obj, meta, name_of
from infergate.util.clock import parse_timestamp
from infergate.util.wait import WaitTimeout, wait_until

COPIED_FROM: Final = "migrate.infergate.io/copied-from"
PROBE_OBJECTIVE: Final = "infergate-migration-probe"  # exists in llm-d.ai only, while the EPP probe runs


@dataclass(frozen=True)
class Move:
    """One x-k8s object and its llm-d.ai copy."""

    source: Kind
    target: Kind
    namespace: str
    name: str
    spec: dict[str, Any]
    labels: dict[str, str]

    @property
    def kind(self) -> str:
        return self.source.kind

    def copy_object(self) -> Obj:
        return {"apiVersion": self.target.api_version, "kind": self.target.kind,
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels),
                             "annotations": {COPIED_FROM: self.source.api_version}},
                "spec": copy.deepcopy(self.spec)}

    def original_object(self) -> Obj:
        return {"apiVersion": self.source.api_version, "kind": self.source.kind,
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels)},
                "spec": copy.deepcopy(self.spec)}


@dataclass
class LlmdPlan:
    namespace: str
    moves: list[Move]
    missing_crds: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    already_copied: list[str] = field(default_factory=list)
    install_crds: bool = False  # apply infergate's llm-d.ai CRDs that are missing, right before the copies

    def copy_order(self) -> list[Move]:
        """Rewrites first: one the EPP misses fails requests, an objective it misses costs a priority."""
        return sorted(self.moves, key=lambda m: m.source is not MODEL_REWRITES)

    def steps(self) -> list[tuple[str, str]]:
        """(step, what) rows, in order."""
        rows = [("precheck", "llm-d.ai CRDs served: " + ("yes" if not self.missing_crds else
                 "NO, missing " + ", ".join(self.missing_crds)))]
        if self.missing_crds and self.install_crds:
            rows.append(("install-crds", "apply infergate's " + ", ".join(self.missing_crds)
                         + " and wait until served, then copy at once"))
        if self.conflicts:
            rows.append(("precheck", "REFUSED: " + "; ".join(self.conflicts)))
        for m in self.copy_order():
            rows.append(("copy", f"{m.source.qualified} {self.namespace}/{m.name} -> {m.target.qualified}"))
        rows.append(("verify-copies", f"{len(self.moves)} copies read back with the original spec"))
        rows.append(("verify-epp", "probe each objective through the gateway (with --gateway-url and --epp-metrics)"))
        for m in self.moves:
            rows.append(("delete-old", f"{m.source.qualified} {self.namespace}/{m.name}"))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "missingCRDs": self.missing_crds, "installCRDs": self.install_crds,
                "conflicts": self.conflicts,
                "alreadyCopied": self.already_copied,
                "moves": [{"kind": m.kind, "name": m.name, "from": m.source.api_version, "to": m.target.api_version}
                          for m in self.moves],
                "steps": [{"step": s, "detail": d} for s, d in self.steps()]}


@dataclass
class LlmdResult:
    phase: str  # completed, rolled-back, refused, failed, nothing-to-do, dry-run
    message: str
    exit_code: int
    steps: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "message": self.message, "exitCode": self.exit_code, "steps": self.steps}


# A verification of the EPP: given the InferenceObjectives to probe (name -> priority, in order),
# the problems found (empty: it admits each with its priority).
EppVerifier = Callable[[Mapping[str, int]], list[str]]


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def plan_llmd(cluster: Cluster, namespace: str, *, install_crds: bool = False) -> LlmdPlan:
    """What moving ``namespace``'s x-k8s objectives and rewrites to llm-d.ai takes (``install_crds``:
    the run applies infergate's llm-d.ai CRDs that are missing)."""
    missing = [target.qualified for target in LLMD_OF.values() if cluster.get(CRDS, None, target.qualified) is None]
    moves: list[Move] = []
    conflicts: list[str] = []
    already: list[str] = []
    for source in (OBJECTIVES, MODEL_REWRITES):
        target = LLMD_OF[source]
        for obj in sorted(cluster.list(source, namespace), key=name_of):
            move = Move(source, target, namespace, name_of(obj), copy.deepcopy(_spec(obj)),
                        {str(k): str(v) for k, v in (meta(obj).get("labels") or {}).items()})
            existing = None if target.qualified in missing else cluster.get(target, namespace, move.name)
            if existing is not None:
                ours = (meta(existing).get("annotations") or {}).get(COPIED_FROM) == source.api_version
                if _spec(existing) != move.spec:
                    conflicts.append(f"{target.qualified} {namespace}/{move.name} exists with another spec"
                                     + (" (an earlier copy: the original changed since)" if ours else ""))
                    continue
                already.append(f"{target.kind} {move.name}")
            moves.append(move)
    return LlmdPlan(namespace, moves, missing, conflicts, already, install_crds)


def probe_objective(plan: LlmdPlan) -> Obj | None:
    """The llm-d.ai InferenceObjective :data:`PROBE_OBJECTIVE` for the pool of the first moved object
    (None when none names a pool)."""
    for m in plan.moves:
        pool_ref = m.spec.get("poolRef")
        if isinstance(pool_ref, dict) and pool_ref.get("name"):
            target = LLMD_OF[OBJECTIVES]
            return {"apiVersion": target.api_version, "kind": target.kind,
                    "metadata": {"name": PROBE_OBJECTIVE, "namespace": plan.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "infergate-migrate"}},
                    "spec": {"priority": 0, "poolRef": copy.deepcopy(pool_ref)}}
    return None


def _verify_epp(cluster: Cluster, plan: LlmdPlan, verify_epp: EppVerifier) -> list[str]:
    """Probe :data:`PROBE_OBJECTIVE` (that the EPP reads llm-d.ai), then each moved objective."""
    marker = probe_objective(plan)
    objectives = {m.name: int(m.spec.get("priority") or 0) for m in plan.moves if m.kind == "InferenceObjective"}
    if marker is None:
        return verify_epp(objectives)
    cluster.apply(LLMD_OF[OBJECTIVES], marker)
    try:
        return verify_epp({PROBE_OBJECTIVE: 0, **objectives})
    finally:
        cluster.delete(LLMD_OF[OBJECTIVES], plan.namespace, PROBE_OBJECTIVE)


def _crds_age_s(cluster: Cluster) -> float:
    """Seconds since the newer of the llm-d.ai CRDs was created (0 when unknown)."""
    ages = []
    for target in LLMD_OF.values():
        created = meta(cluster.get(CRDS, None, target.qualified) or {}).get("creationTimestamp")
        if not created:
            return 0.0
        ages.append((datetime.now(UTC) - parse_timestamp(str(created))).total_seconds())
    return min(ages) if ages else 0.0


def install_llmd_crds(cluster: Cluster, names: list[str], *, dry_run: bool = False, timeout_s: float = 30.0) -> None:
    """Apply infergate's llm-d.ai CRDs named ``names`` and wait until the API serves them
    (:class:`WaitTimeout` after ``timeout_s``)."""
    docs = [d for d in crds.generate("llm-d") if d["metadata"]["name"] in names]
    for doc in docs:
        cluster.apply(CRDS, doc, dry_run=dry_run)
    if dry_run:
        return
    kinds = [target for target in LLMD_OF.values() if target.qualified in names]
    wait_until(lambda: all(cluster.served(k) for k in kinds), timeout_s, interval=0.02,
               what="the llm-d.ai CRDs to be served")


def run(cluster: Cluster, plan: LlmdPlan, *, dry_run: bool = False, verify_epp: EppVerifier | None = None,
        switch_grace_s: float = 5.0, progress: Callable[[str], None] = lambda _: None) -> LlmdResult:
    """Make the move; ``switch_grace_s``: without ``verify_epp``, how old the llm-d.ai CRDs must be
    before the x-k8s objects are deleted (time for every EPP to have switched to llm-d.ai)."""
    steps: list[dict[str, str]] = []

    def step(name: str, status: str, detail: str) -> None:
        steps.append({"step": name, "status": status, "detail": detail})
        progress(f"{name}: {status} {detail}")

    if plan.missing_crds and not plan.install_crds:
        step("precheck", "failed", "missing " + ", ".join(plan.missing_crds))
        return LlmdResult("failed", "the llm-d.ai CRDs are not installed (" + ", ".join(plan.missing_crds)
                          + "): install them first, e.g. `infergate crds --bundle llm-d | kubectl apply -f -`, "
                          "and run this right after (an EPP reads only llm-d.ai once they exist), or let this "
                          "command install them right before the copies: --install-crds", EXIT_ERROR, steps)
    if plan.conflicts:
        step("precheck", "refused", "; ".join(plan.conflicts))
        return LlmdResult("refused", "refused: " + "; ".join(plan.conflicts), EXIT_REFUSED, steps)
    if plan.missing_crds:  # --install-crds: as late as possible, the copies follow at once
        step("precheck", "ok", f"{len(plan.moves)} object(s) to move")
        try:
            install_llmd_crds(cluster, plan.missing_crds, dry_run=dry_run)
        except (ClusterError, WaitTimeout) as exc:
            step("install-crds", "failed", str(exc))
            return LlmdResult("failed", f"installing the llm-d.ai CRDs: {exc}", EXIT_ERROR, steps)
        step("install-crds", "dry-run" if dry_run else "done", ", ".join(plan.missing_crds))
        if dry_run:  # the copies cannot be sent, even with dryRun, before the CRDs exist
            for m in plan.copy_order():
                step("copy", "dry-run", f"{m.target.kind} {m.name} ({m.target.api_version}), after the CRDs")
            return LlmdResult("dry-run", "dry run: the llm-d.ai CRDs would be installed and "
                              f"{len(plan.moves)} object(s) would move to llm-d.ai", EXIT_OK, steps)
        if not plan.moves:
            return LlmdResult("nothing-to-do", "the llm-d.ai CRDs are installed; nothing to move in namespace "
                              f"{plan.namespace}", EXIT_OK, steps)
    elif not plan.moves:
        step("precheck", "ok", "no x-k8s InferenceObjective or InferenceModelRewrite")
        return LlmdResult("nothing-to-do", f"nothing to move in namespace {plan.namespace}", EXIT_OK, steps)
    else:
        step("precheck", "ok", f"{len(plan.moves)} object(s) to move")
    created: list[Move] = []
    try:
        for m in plan.copy_order():
            existed = cluster.get(m.target, m.namespace, m.name) is not None
            cluster.apply(m.target, m.copy_object(), dry_run=dry_run)
            if not existed:
                created.append(m)
            step("copy", "dry-run" if dry_run else "done", f"{m.target.kind} {m.name} ({m.target.api_version})")
        if dry_run:
            for m in plan.moves:
                cluster.delete(m.source, m.namespace, m.name, dry_run=True)
                step("delete-old", "dry-run", f"{m.source.kind} {m.name} ({m.source.api_version})")
            return LlmdResult("dry-run", f"dry run: {len(plan.moves)} object(s) would move to llm-d.ai", EXIT_OK,
                              steps)
        problems = [p for m in plan.moves for p in _verify_copy(cluster, m)]
        if not problems and verify_epp is not None:
            step("verify-copies", "done", f"{len(plan.moves)} copies")
            problems = _verify_epp(cluster, plan, verify_epp)
            stage = "verify-epp"
        else:
            stage = "verify-copies"
        if problems:
            step(stage, "failed", "; ".join(problems))
            for m in created:
                cluster.delete(m.target, m.namespace, m.name)
            for name in plan.missing_crds:  # installed by this run: the EPP goes back to the x-k8s objects
                cluster.delete(CRDS, None, name)
            step("rollback", "done", f"deleted {len(created)} copies"
                 + (", and the llm-d.ai CRDs this run installed" if plan.missing_crds else "")
                 + "; the x-k8s objects are untouched")
            return LlmdResult("rolled-back", f"{stage} failed: " + "; ".join(problems), EXIT_ROLLED_BACK, steps)
        if verify_epp is None:
            step("verify-copies", "done", f"{len(plan.moves)} copies")
            step("verify-epp", "skipped", "no probe (--gateway-url, --epp-metrics, --probe-model)")
            wait_s = max(0.0, switch_grace_s - _crds_age_s(cluster))
            time.sleep(wait_s)
            step("wait-switch", "done", f"waited {wait_s:.1f} s: the llm-d.ai CRDs are {switch_grace_s:g} s old, "
                 "time for an EPP to read llm-d.ai before the x-k8s objects go")
        else:
            step("verify-epp", "done", "the EPP reads llm-d.ai and admits each objective with its priority")
        for m in plan.moves:
            cluster.delete(m.source, m.namespace, m.name)
            step("delete-old", "done", f"{m.source.kind} {m.name} ({m.source.api_version})")
    except ClusterError as exc:
        step("error", "failed", str(exc))
        return LlmdResult("failed", f"{exc} (run again: the move resumes; or `infergate migrate llm-d --rollback`)",
                          EXIT_ERROR, steps)
    return LlmdResult("completed", f"{len(plan.moves)} object(s) now served from llm-d.ai in namespace "
                      f"{plan.namespace}", EXIT_OK, steps)


def _verify_copy(cluster: Cluster, move: Move) -> list[str]:
    got = cluster.get(move.target, move.namespace, move.name)
    if got is None:
        return [f"{move.target.kind} {move.name}: not found after apply"]
    if _spec(got) != move.spec:
        return [f"{move.target.kind} {move.name}: spec differs from the original after apply"]
    return []


def rollback(cluster: Cluster, namespace: str, *, dry_run: bool = False) -> LlmdResult:
    """Undo the move in ``namespace``: restore each x-k8s object that was deleted from its
    llm-d.ai copy, then delete the copies (only those the migration made: :data:`COPIED_FROM`)."""
    steps: list[dict[str, str]] = []
    count = 0
    for source, target in LLMD_OF.items():
        for obj in cluster.list(target, namespace):
            if (meta(obj).get("annotations") or {}).get(COPIED_FROM) != source.api_version:
                continue
            move = Move(source, target, namespace, name_of(obj), copy.deepcopy(_spec(obj)),
                        {str(k): str(v) for k, v in (meta(obj).get("labels") or {}).items()})
            if cluster.get(source, namespace, move.name) is None:
                cluster.apply(source, move.original_object(), dry_run=dry_run)
                steps.append({"step": "restore", "status": "dry-run" if dry_run else "done",
                              "detail": f"{source.kind} {move.name} ({source.api_version})"})
            cluster.delete(target, namespace, move.name, dry_run=dry_run)
            steps.append({"step": "delete-copy", "status": "dry-run" if dry_run else "done",
                          "detail": f"{target.kind} {move.name} ({target.api_version})"})
            count += 1
    if not count:
        return LlmdResult("nothing-to-do", f"no llm-d.ai copy made by the migration in namespace {namespace}",
                          EXIT_OK, steps)
    return LlmdResult("rolled-back", f"{count} copies removed, the x-k8s objects restored"
                      + (" (dry run)" if dry_run else "") + "; an EPP reads them again once the llm-d.ai CRDs are "
                      "removed (while those exist it reads only llm-d.ai)", EXIT_OK, steps)
