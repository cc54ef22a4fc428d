"""The migration plan: typed steps computed from the preview objects of one HTTPRoute.

The unit of migration is one HTTPRoute in one namespace (the source document's
``llm-route``): the preview pools it sends traffic to, the InferenceModels of those pools,
their EPPs and Helm releases. The GA objects come from the converter
(:mod:`infergate.api.conversion`), so ``plan`` reports exactly what ``infergate convert``
would and names every lossy field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from infergate.api.conversion import ConvertOptions, convert_objects, ga_pool_name, helm_epp_name
from infergate.api.conversion.constants import DEFAULT_EPP_PORT, GA_GROUP, PREVIEW_GROUP
from infergate.api.headers import MODEL_NAME_REWRITE
from infergate.migrate.helm import GA_CHART_VERSION, OCI_CHART, ChartInstall
from infergate.migrate.rbac import describe_rules, ga_epp_rbac_objects
from infergate.migrate.resources import (
    GA_POOLS,
    PREVIEW_CRD_NAMES,
    PREVIEW_POOLS,
    Obj,
    meta,
    name_of,
)

MigrationPath = Literal["simple", "zero-downtime"]
PATHS: tuple[MigrationPath, ...] = ("simple", "zero-downtime")
DEFAULT_STEPS: tuple[int, ...] = (0, 50, 100)
HELM_RELEASE_ANNOTATION = "meta.helm.sh/release-name"
LLMD_API_VERSION = "llm-d.ai/v1alpha2"  # InferenceObjective / InferenceModelRewrite in the llm-d router


class PlanError(Exception):
    """The cluster's state does not allow a plan (message says why and what to do)."""


@dataclass(frozen=True)
class PoolPlan:
    namespace: str
    preview: str
    ga: str
    selector: tuple[tuple[str, str], ...]
    target_port: int
    preview_epp: str  # the preview pool's EPP Service
    ga_epp: str  # the GA pool's EPP Service (the chart's <release>-epp)
    preview_release: str | None  # the Helm release that installed the preview pool
    install: Literal["helm", "objects"]
    chart: ChartInstall | None
    ga_object: Obj  # the converted GA pool (applied in "objects" mode; documents the chart's result)
    # "objects" mode: the GA EPP's ServiceAccount, Role, RoleBinding, Deployment, Service (apply order)
    ga_epp_objects: tuple[Obj, ...] = ()
    # zero-downtime: the GA pool is FailOpen from its install until final-route, which restores
    # final_failure_mode (a dead GA EPP then costs no request while the analysis rolls back)
    fail_open_during: bool = False
    final_failure_mode: str = "FailClose"


@dataclass(frozen=True)
class Gates:
    """Analysis thresholds between weight steps."""

    probes: int = 60  # probe requests per analysis
    min_success_rate: float = 0.99
    p99_ttft_factor: float = 1.5  # p99 TTFT may grow to baseline * factor + slack
    p99_ttft_slack_s: float = 0.05
    attribution_floor: float = 0.10  # per-pool share within max(floor, 3 sigma)
    allow_unknown_models_served: bool = False  # a declared (not silent) acceptance of the allow-list change
    require_attribution: bool = True
    latency_windows: int = 2  # windows in which p99 TTFT alone must fail before a rollback

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- steps -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    id: str
    description: str
    manual: str = ""  # the manual command(s) of the source document this step replaces


@dataclass(frozen=True)
class Preflight(Step):
    pass


@dataclass(frozen=True)
class InstallCrds(Step):
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallPool(Step):
    pool: str = ""  # GA pool name


@dataclass(frozen=True)
class ApplyObjects(Step):
    objects: tuple[Obj, ...] = ()


@dataclass(frozen=True)
class WaitReady(Step):
    timeout_s: float = 120.0


@dataclass(frozen=True)
class Baseline(Step):
    pass


@dataclass(frozen=True)
class Shift(Step):
    ga_weight: int = 0


@dataclass(frozen=True)
class Analyse(Step):
    ga_weight: int = 0


@dataclass(frozen=True)
class Lock(Step):
    pass


@dataclass(frozen=True)
class FinalRoute(Step):
    pass


@dataclass(frozen=True)
class RemovePreview(Step):
    """helm uninstall of the preview releases, else deletion of pools, models, EPP Deployments/Services."""


@dataclass(frozen=True)
class DeletePreviewCrds(Step):
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verify(Step):
    pass


STEP_TYPES: dict[str, type[Step]] = {
    t.__name__: t for t in (Preflight, InstallCrds, InstallPool, ApplyObjects, WaitReady, Baseline, Shift,
                            Analyse, Lock, FinalRoute, RemovePreview, DeletePreviewCrds, Verify)
}


def step_to_dict(step: Step) -> dict[str, Any]:
    data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in step.__dict__.items()}
    return {"type": type(step).__name__, **data}


def step_from_dict(data: dict[str, Any]) -> Step:
    kind = STEP_TYPES[data["type"]]
    args: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "type"}
    return kind(**args)


# -- the plan -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lossy:
    object: str  # "InferenceModel ns/name"
    field: str
    message: str


@dataclass(frozen=True)
class Plan:
    path: MigrationPath
    namespace: str
    route: str
    pools: tuple[PoolPlan, ...]
    original_route: Obj
    final_routes: tuple[Obj, ...]  # the converted route (+ continuation routes)
    objectives: tuple[Obj, ...]  # InferenceObjectives (+ InferenceModelRewrites)
    preview_models: tuple[str, ...]  # InferenceModel names to delete at teardown
    model_names: tuple[str, ...]  # the modelNames clients use (probe targets)
    steps: tuple[Step, ...]
    weights: tuple[int, ...]
    gates: Gates
    lossy: tuple[Lossy, ...]
    preview_epp_deployments: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def state_name(self) -> str:
        return f"infergate-migration-{self.route}"

    def pool(self, ga_name: str) -> PoolPlan:
        return next(p for p in self.pools if p.ga == ga_name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "namespace": self.namespace, "route": self.route,
            "pools": [_pool_to_dict(p) for p in self.pools],
            "originalRoute": self.original_route, "finalRoutes": list(self.final_routes),
            "objectives": list(self.objectives), "previewModels": list(self.preview_models),
            "modelNames": list(self.model_names),
            "steps": [step_to_dict(s) for s in self.steps], "weights": list(self.weights),
            "gates": self.gates.to_dict(),
            "lossy": [{"object": w.object, "field": w.field, "message": w.message} for w in self.lossy],
            "previewEppDeployments": list(self.preview_epp_deployments), "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            path=data["path"], namespace=data["namespace"], route=data["route"],
            pools=tuple(_pool_from_dict(p) for p in data["pools"]),
            original_route=data["originalRoute"], final_routes=tuple(data["finalRoutes"]),
            objectives=tuple(data["objectives"]), preview_models=tuple(data["previewModels"]),
            model_names=tuple(data["modelNames"]),
            steps=tuple(step_from_dict(s) for s in data["steps"]), weights=tuple(data["weights"]),
            gates=Gates(**data["gates"]),
            lossy=tuple(Lossy(w["object"], w["field"], w["message"]) for w in data["lossy"]),
            preview_epp_deployments=tuple(data.get("previewEppDeployments", ())),
            notes=tuple(data.get("notes", ())),
        )


def _pool_to_dict(p: PoolPlan) -> dict[str, Any]:
    return {
        "namespace": p.namespace, "preview": p.preview, "ga": p.ga, "selector": [list(kv) for kv in p.selector],
        "targetPort": p.target_port, "previewEpp": p.preview_epp, "gaEpp": p.ga_epp,
        "previewRelease": p.preview_release, "install": p.install,
        "chart": None if p.chart is None else {
            "release": p.chart.release, "namespace": p.chart.namespace, "chart": p.chart.chart,
            "version": p.chart.version, "sets": [list(kv) for kv in p.chart.sets]},
        "gaObject": p.ga_object, "gaEppObjects": list(p.ga_epp_objects),
        "failOpenDuringMigration": p.fail_open_during, "finalFailureMode": p.final_failure_mode,
    }


def _pool_from_dict(d: dict[str, Any]) -> PoolPlan:
    chart = d.get("chart")
    return PoolPlan(
        d["namespace"], d["preview"], d["ga"], tuple((k, v) for k, v in d["selector"]), int(d["targetPort"]),
        d["previewEpp"], d["gaEpp"], d.get("previewRelease"), d["install"],
        None if chart is None else ChartInstall(chart["release"], chart["namespace"], chart["chart"],
                                                chart.get("version"), tuple((k, v) for k, v in chart["sets"])),
        d["gaObject"], tuple(d.get("gaEppObjects") or ()),
        bool(d.get("failOpenDuringMigration", False)), str(d.get("finalFailureMode") or "FailClose"),
    )


@dataclass(frozen=True)
class PlanOptions:
    path: MigrationPath = "zero-downtime"
    weights: tuple[int, ...] = DEFAULT_STEPS
    pool_name_suffix: str = "-ga"
    install: Literal["auto", "helm", "objects"] = "auto"
    chart: str = OCI_CHART
    chart_version: str | None = GA_CHART_VERSION
    provider: str = "none"
    unknown_models: Literal["serve", "reject"] = "serve"
    target_models: str | None = None  # the converter's --target-models (None: its default)
    gates: Gates = field(default_factory=Gates)
    convert: ConvertOptions | None = None
    fail_open_during_migration: bool = True  # zero-downtime: GA pools FailOpen until final-route
    # create InferenceObjectives / InferenceModelRewrites as llm-d.ai/v1alpha2 (the llm-d.ai CRDs are
    # installed: an EPP reads only that group then; targets.py decides)
    llmd_objects: bool = False


def validate_weights(weights: tuple[int, ...]) -> tuple[int, ...]:
    if not weights:
        raise PlanError("--steps: at least one weight is needed")
    if any(w < 0 or w > 100 for w in weights):
        raise PlanError(f"--steps: weights are percentages of traffic to GA, 0..100: {list(weights)}")
    if list(weights) != sorted(set(weights)):
        raise PlanError(f"--steps: weights must increase strictly: {list(weights)}")
    if weights[-1] != 100:
        weights = (*weights, 100)
    return weights


def select_route(routes: list[Obj], route: str | None) -> Obj:
    """The HTTPRoute to migrate: ``route``, or the only one sending traffic to preview pools."""
    from infergate.migrate.census import preview_backend_refs

    using = [r for r in routes if preview_backend_refs(r)]
    if route is not None:
        found = next((r for r in routes if name_of(r) == route), None)
        if found is None:
            raise PlanError(f"HTTPRoute {route} not found")
        return found
    if not using:
        raise PlanError("no HTTPRoute sends traffic to an InferencePool of group " + PREVIEW_GROUP)
    if len(using) > 1:
        raise PlanError("several HTTPRoutes use preview pools; choose one with --route: "
                        + ", ".join(sorted(name_of(r) for r in using)))
    return using[0]


def build_plan(
    *,
    namespace: str,
    route: Obj,
    preview_pools: list[Obj],
    preview_models: list[Obj],
    existing_ga_pools: list[Obj],
    existing_objectives: list[Obj],
    epp_deployments: dict[str, str],  # preview pool name -> EPP Deployment name
    epp_objects: dict[str, tuple[Obj, Obj]] | None = None,  # preview pool -> (EPP Deployment, EPP Service)
    ga_crds_missing: tuple[str, ...],
    options: PlanOptions,
) -> Plan:
    from infergate.migrate.census import preview_backend_refs

    weights = validate_weights(options.weights)
    route_name = name_of(route)
    wanted = sorted(set(preview_backend_refs(route)))
    pools_by_name = {name_of(p): p for p in preview_pools}
    missing = [p for p in wanted if p not in pools_by_name]
    if missing and options.path == "zero-downtime":
        raise PlanError(f"HTTPRoute {route_name} sends traffic to preview pools that do not exist: "
                        + ", ".join(missing) + " (nothing to shift from)")
    pools = [pools_by_name[p] for p in wanted if p in pools_by_name]
    models = [m for m in preview_models if ((m.get("spec") or {}).get("poolRef") or {}).get("name") in wanted]
    convert_options = options.convert or ConvertOptions(
        pool_name_suffix=options.pool_name_suffix, unknown_models=options.unknown_models,
        **({"target_models": options.target_models} if options.target_models else {}),  # type: ignore[arg-type]
    )
    inputs = [*pools, *models, route, *existing_ga_pools, *existing_objectives]
    results, warnings, problems = convert_objects(inputs, convert_options)
    if problems:
        raise PlanError("the preview objects cannot be converted:\n  " + "\n  ".join(str(p) for p in problems))
    converted = [o for r in results for o in r.objects]
    ga_pool_objs = {name_of(o): o for o in converted if o.get("apiVersion") == GA_POOLS.api_version}
    ga_pool_objs.update({name_of(o): o for o in existing_ga_pools})
    objectives = tuple(o for o in converted if o.get("kind") in ("InferenceObjective", "InferenceModelRewrite")
                       and o not in existing_objectives)
    if options.llmd_objects:
        objectives = tuple({**o, "apiVersion": LLMD_API_VERSION} for o in objectives)
    final_routes = tuple(o for o in converted if o.get("kind") == "HTTPRoute")

    pool_plans: list[PoolPlan] = []
    for pool in pools:
        name = name_of(pool)
        spec = pool.get("spec") or {}
        ga = ga_pool_name(name, options.pool_name_suffix)
        release = (meta(pool).get("annotations") or {}).get(HELM_RELEASE_ANNOTATION)
        install: Literal["helm", "objects"] = (
            ("helm" if release else "objects") if options.install == "auto" else options.install
        )
        selector = tuple(sorted((str(k), str(v)) for k, v in (spec.get("selector") or {}).items()))
        ext = spec.get("extensionRef") or {}
        ga_object = ga_pool_objs.get(ga) or {}
        final_mode = str(((ga_object.get("spec") or {}).get("endpointPickerRef") or {}).get("failureMode")
                         or "FailClose")
        chart = None
        if install == "helm":
            sets = [(f"inferencePool.modelServers.matchLabels.{k}", v) for k, v in selector]
            sets.append(("inferencePool.targetPorts[0].number", str(spec.get("targetPortNumber"))))
            sets.append(("provider.name", options.provider))
            # the preview pool's failure mode, whatever the chart's default (FailOpen since upstream v1.4)
            sets.append(("inferenceExtension.failureMode", final_mode))
            chart = ChartInstall(ga, namespace, options.chart, options.chart_version, tuple(sets))
        ga_epp = str(((ga_object.get("spec") or {}).get("endpointPickerRef") or {}).get("name") or helm_epp_name(ga))
        source = (epp_objects or {}).get(name)
        epp_copy = ga_epp_objects(source[0], source[1], ga, ga_epp, namespace) \
            if install == "objects" and source is not None else ()
        pool_plans.append(PoolPlan(
            namespace, name, ga, selector, int(spec.get("targetPortNumber") or 0),
            str(ext.get("name") or helm_epp_name(name)), ga_epp, release, install, chart, ga_object, epp_copy,
            options.path == "zero-downtime" and options.fail_open_during_migration and final_mode != "FailOpen",
            final_mode,
        ))

    preview_epps = {epp_deployments[p.preview] for p in pool_plans if p.preview in epp_deployments}
    clash = ga_names_clash(pool_plans, preview_epps)
    if options.path == "zero-downtime" and clash:
        raise PlanError(f"--path zero-downtime runs the GA stack beside the preview one, but its EPP or Helm release "
                        f"would take a name the preview stack uses ({', '.join(sorted(clash))}; --pool-name-suffix "
                        f"{options.pool_name_suffix!r}): choose another --pool-name-suffix, or --path simple, "
                        "which removes the preview stack first")
    lossy = tuple(Lossy(str(w.obj), w.field, w.message) for w in warnings)
    model_names = tuple(sorted({str((m.get("spec") or {}).get("modelName")) for m in models}))
    original = _clean(route)
    steps = _steps(options.path, namespace, route_name, pool_plans, objectives, final_routes, weights,
                   ga_crds_missing, bool(clash))
    notes: list[str] = []
    if any(p.install == "objects" for p in pool_plans):
        notes.append("GA pools without a Helm release are applied as objects; their EPP Deployment/Service "
                     "is created from the preview EPP's (v1.0 flags: --pool-name, --pool-group "
                     f"{GA_GROUP}), port {DEFAULT_EPP_PORT} unless the preview pool names one")
    for p in pool_plans:
        if not p.ga_epp_objects:
            continue
        notes.append(f"the GA EPP {p.ga_epp} runs as its own ServiceAccount {p.ga_epp}, with a Role and RoleBinding "
                     f"{p.ga_epp} in {namespace} as charts/inferencepool creates them ({describe_rules()}): the "
                     "preview EPP's ServiceAccount and its RBAC, if any, are for the preview group and stay as "
                     "they are")
        if token_not_mounted(p.ga_epp_objects):
            notes.append(f"the preview EPP Deployment of {p.preview} sets automountServiceAccountToken: false and "
                         f"the GA EPP {p.ga_epp} keeps it: it then has no credentials of its own (no token of "
                         f"ServiceAccount {p.ga_epp}) and can read its pool only if it is given a token some "
                         "other way")
    notes += _on_purpose_notes(models, objectives)
    fail_open = [p.ga for p in pool_plans if p.fail_open_during]
    if fail_open:
        notes.append("GA pool(s) " + ", ".join(fail_open) + " are FailOpen from install-pool to final-route: while "
                     "both pools serve, a GA EPP that dies costs no request (the gateway serves round robin over the "
                     "pool's pods) and the analysis rolls back; final-route restores "
                     + ", ".join(sorted({p.final_failure_mode for p in pool_plans if p.fail_open_during}))
                     + " (--fail-close-during-migration keeps it throughout)")
    rewrites = sorted({str(h.get("value")) for r in final_routes for rule in (r.get("spec") or {}).get("rules") or []
                       for f in rule.get("filters") or [] for h in (f.get("requestHeaderModifier") or {}).get("set") or []
                       if str(h.get("name", "")).lower() == MODEL_NAME_REWRITE})
    if rewrites and options.path == "zero-downtime":
        notes.append(f"while the weights shift, rules that set {MODEL_NAME_REWRITE} (to "
                     + ", ".join(rewrites) + ") also send traffic to the preview pool: a v0.3.0 EPP ignores the "
                     "header (it rewrites from its InferenceModel), an EPP that applies it for a preview pool would "
                     "look up the rewritten name and answer 404 (the analysis at weight 0 catches that)")
    return Plan(
        path=options.path, namespace=namespace, route=route_name, pools=tuple(pool_plans),
        original_route=original, final_routes=final_routes, objectives=objectives,
        preview_models=tuple(sorted(name_of(m) for m in models)), model_names=model_names,
        steps=steps, weights=weights, gates=options.gates, lossy=lossy,
        preview_epp_deployments=tuple(sorted({epp_deployments[p.preview] for p in pool_plans
                                              if p.preview in epp_deployments and p.install == "objects"})),
        notes=tuple(notes),
    )


def _on_purpose_notes(models: list[Obj], objectives: tuple[Obj, ...]) -> list[str]:
    """Where the result differs from the source document's on purpose (docs/migrate.md explains why)."""
    notes: list[str] = []
    priorities = sorted((name_of(o), (o.get("spec") or {}).get("priority")) for o in objectives
                        if o.get("kind") == "InferenceObjective")
    if priorities:
        notes.append("on purpose, unlike the source document (which gives every InferenceObjective priority 2): "
                     "each priority comes from its InferenceModel's criticality (Critical 2, Standard 1, Sheddable "
                     "-1), so the order between models and the shedding class are kept: "
                     + ", ".join(f"{n}={p}" for n, p in priorities))
    split = sorted(name_of(m) for m in models if len((m.get("spec") or {}).get("targetModels") or []) > 1)
    if split:
        notes.append("on purpose, unlike the source document (an InferenceObjective has no targetModels): the "
                     "weighted targetModels split of " + ", ".join(split) + " is kept, as HTTPRoute backendRefs "
                     "that rewrite the model name (--target-models chooses how)")
    return notes


def _steps(
    path: MigrationPath,
    namespace: str,
    route: str,
    pools: list[PoolPlan],
    objectives: tuple[Obj, ...],
    final_routes: tuple[Obj, ...],
    weights: tuple[int, ...],
    ga_crds_missing: tuple[str, ...],
    ga_names_taken: bool,  # a GA name is one the preview stack uses (ga_names_clash)
) -> tuple[Step, ...]:
    ns = f"-n {namespace}"
    install_crds = InstallCrds(
        "install-ga-crds", "install the GA CRDs that are missing: " + (", ".join(ga_crds_missing) or "none"),
        "kubectl apply -f .../v1.0.0/manifests.yaml (or only the InferenceObjective CRD on GKE >= 1.34)",
        names=ga_crds_missing,
    )
    pool_steps = [
        InstallPool(f"install-pool-{p.ga}",
                    f"install GA InferencePool {p.ga} on the same pods as {p.preview} "
                    f"({', '.join(f'{k}={v}' for k, v in p.selector)}) with its EPP {p.ga_epp}"
                    + (" (" + ", ".join(f"{o['kind']} {name_of(o)}" for o in p.ga_epp_objects) + ")"
                       if p.ga_epp_objects else ""),
                    p.chart.command() if p.chart else f"kubectl apply {ns} -f <{p.ga} pool + EPP>"
                    + (" (ServiceAccount, Role, RoleBinding, Deployment, Service)" if p.ga_epp_objects else ""),
                    pool=p.ga)
        for p in pools
    ]
    apply_objectives = ApplyObjects(
        "apply-objectives",
        "create InferenceObjectives " + ", ".join(sorted(name_of(o) for o in objectives)) if objectives
        else "no InferenceObjectives to create",
        f"kubectl apply {ns} -f - <<EOF (InferenceObjective, poolRef.group: {GA_GROUP})", objects=objectives,
    )
    final = FinalRoute("final-route", f"HTTPRoute {route}: only the GA pools (converted rules with objectives)",
                       f"kubectl apply {ns} -f - <<EOF (HTTPRoute {route}, backendRefs group {GA_GROUP} weight 100)")
    remove = RemovePreview(
        "remove-preview",
        "remove the preview stack: " + "; ".join(
            f"helm uninstall {p.preview_release}" if p.preview_release else
            f"delete {PREVIEW_POOLS.qualified}/{p.preview}, its InferenceModels and EPP {p.preview_epp}"
            for p in pools),
        "; ".join(f"helm uninstall {p.preview_release} {ns}" if p.preview_release else
                  f"kubectl delete {ns} {PREVIEW_POOLS.qualified}/{p.preview} ..." for p in pools),
    )
    delete_crds = DeletePreviewCrds(
        "delete-preview-crds",
        "delete the preview CRDs when no namespace uses them any more: " + ", ".join(PREVIEW_CRD_NAMES),
        "kubectl delete -f .../v0.3.0/manifests.yaml", names=PREVIEW_CRD_NAMES,
    )
    wait = WaitReady("wait-ready", "wait until each GA pool exists, its EPP Deployment is Available and its EPP "
                     "Service has ready endpoints (the gateway's statuses are checked at every analysis and at "
                     "verify); a deleted EPP Deployment or Service is recreated first",
                     "; ".join(f"kubectl rollout status {ns} deployment/{p.ga_epp} --timeout=2m && kubectl wait {ns} "
                               f"--for=condition=Available deployment/{p.ga_epp} --timeout=2m && kubectl get {ns} "
                               f"endpointslices -l kubernetes.io/service-name={p.ga_epp}" for p in pools)
                     + " (the source document has no wait: a route that sends traffic to a pool whose EPP is not "
                     "ready yet fails requests)")
    verify = Verify("verify", "Gateway Programmed, HTTPRoute Accepted+ResolvedRefs, pools Accepted, probe requests "
                    "200 from the GA pools", "kubectl get gateway -o wide; curl -i $IP:$PORT/v1/completions ...")
    preflight = Preflight("preflight", "check the cluster: CRDs per group, objects, gateway, no GitOps owner")
    if path == "simple":
        if ga_names_taken:  # the GA stack can only be installed once the preview one is gone
            return (preflight, remove, delete_crds, install_crds, *pool_steps, apply_objectives, final, wait, verify)
        # Everything that can start before the preview stack goes is started and waited for first, so
        # the downtime is only from its removal until the GA route is programmed (docs/migrate.md).
        return (preflight, install_crds, *pool_steps, apply_objectives, wait, remove, final, delete_crds, verify)
    shifts: list[Step] = []
    for w in weights:
        shifts.append(Shift(f"shift-{w}", f"HTTPRoute {route}: {100 - w}% preview, {w}% GA",
                            f"kubectl apply {ns} -f - <<EOF (backendRefs weight {100 - w} / {w})", ga_weight=w))
        shifts.append(Analyse(f"analyse-{w}", f"analyse at {w}% GA: success rate, p99 TTFT, per-pool share, "
                              "model allow-list", f"kubectl get {ns} httproute/{route} -o yaml (every parent "
                              "Accepted and ResolvedRefs True), then monitor for a few minutes", ga_weight=w))
    return (
        preflight, install_crds, *pool_steps, apply_objectives, wait,
        Baseline("baseline", "measure the preview stack before any shift (success rate, p99 TTFT, 404 models)"),
        *shifts,
        Lock("lock", "lock the migration (one-way): rollback needs --force from here on"),
        final, verify, remove, delete_crds,
    )


def ga_names_clash(pools: list[PoolPlan], preview_epp_deployments: set[str]) -> set[str]:
    """The names some GA pool's Helm release or EPP objects would take that the preview stack still
    uses (``--pool-name-suffix ''`` with a release named after its pool): then the simple path
    removes the preview stack before it installs the GA one, as the source document does, and the
    zero-downtime path is refused."""
    preview = {n for p in pools for n in (p.preview_epp, p.preview_release) if n} | preview_epp_deployments
    ga = {n for p in pools for n in (p.ga_epp, p.chart.release if p.chart else None,
                                     *(name_of(o) for o in p.ga_epp_objects)) if n}
    return preview & ga


def _clean(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out.pop("status", None)
    m = out.get("metadata") or {}
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        m.pop(key, None)
    return out


def shift_route(final_route: Obj, pools: tuple[PoolPlan, ...], ga_weight: int) -> Obj:
    """The converted route with every rule's GA backendRefs weighted ``ga_weight`` percent and the
    matching preview pool ``100 - ga_weight`` percent.

    Weights are keyed by (group, kind, name), so a preview and a GA pool of the same name stay
    apart. The preview backendRef carries no per-backendRef filters (a GA model split — several
    backendRefs to the same pool, each rewriting the model — is the preview EPP's own
    targetModels split), and one preview backendRef per pool and rule gets the summed weight.
    """
    ga_to_preview = {p.ga: p.preview for p in pools}
    route = copy.deepcopy(final_route)
    for rule in (route.get("spec") or {}).get("rules") or []:
        preview_refs: dict[str, Obj] = {}
        others: list[Obj] = []
        for ref in rule.get("backendRefs") or []:
            if ref.get("group") == GA_GROUP and ref.get("kind") == "InferencePool" and ref.get("name") in ga_to_preview:
                base = int(ref.get("weight", 1))
                name = ga_to_preview[ref["name"]]
                entry = preview_refs.setdefault(name, {
                    **{k: v for k, v in ref.items() if k not in ("filters", "weight")},
                    "group": PREVIEW_GROUP, "name": name, "weight": 0})
                entry["weight"] += base * (100 - ga_weight)
                others.append({**ref, "weight": base * ga_weight})
            else:
                others.append(ref)
        rule["backendRefs"] = [*preview_refs.values(), *others]
    return route


def ga_epp_objects(deployment: Obj, service: Obj, pool: str, epp: str, namespace: str) -> tuple[Obj, ...]:
    """The GA pool's EPP: the preview EPP's Deployment and Service renamed to ``epp``, v1.0 flags,
    with its own ServiceAccount, Role and RoleBinding ``epp`` (:mod:`.rbac`, the chart's rules)
    instead of the preview EPP's ServiceAccount, whose RBAC covers the preview group only.

    Returned in the order they are applied: the RBAC objects before the Deployment whose pods
    need them, the Service last (the runner takes an existing Service as "EPP already there").
    """
    label = {"inferencepool": epp}
    dep = copy.deepcopy(deployment)
    dep["metadata"] = {"name": epp, "namespace": namespace, "labels": label}
    dep.pop("status", None)
    spec = dep["spec"]
    spec["selector"] = {"matchLabels": label}
    spec["template"].setdefault("metadata", {})["labels"] = label
    pod = spec["template"].setdefault("spec", {})
    pod.pop("serviceAccount", None)  # the deprecated alias would name the preview EPP's account
    pod["serviceAccountName"] = epp
    for container in pod.get("containers") or []:
        container["args"] = ga_epp_args(container.get("args") or [], pool, namespace)
    svc = copy.deepcopy(service)
    svc["metadata"] = {"name": epp, "namespace": namespace, "labels": label}
    svc.pop("status", None)
    for key in ("clusterIP", "clusterIPs"):
        svc["spec"].pop(key, None)
    svc["spec"]["selector"] = label
    return (*ga_epp_rbac_objects(epp, namespace, label), dep, svc)


def token_not_mounted(objects: tuple[Obj, ...]) -> bool:
    """Whether the EPP Deployment among ``objects`` sets ``automountServiceAccountToken: false``."""
    return any(o.get("kind") == "Deployment"
               and ((o.get("spec") or {}).get("template") or {}).get("spec", {}).get("automountServiceAccountToken")
               is False for o in objects)


_V1_FLAG_NAMES = {
    "poolName": "pool-name", "poolNamespace": "pool-namespace", "grpcPort": "grpc-port",
    "grpcHealthPort": "grpc-health-port", "metricsPort": "metrics-port",
    "totalQueuedRequestsMetric": "total-queued-requests-metric",
    "kvCacheUsagePercentageMetric": "kv-cache-usage-percentage-metric", "loraInfoMetric": "lora-info-metric",
    "refreshMetricsInterval": "refresh-metrics-interval",
    "refreshPrometheusMetricsInterval": "refresh-prometheus-metrics-interval",
    "secureServing": "secure-serving", "certPath": "cert-path",
}


def ga_epp_args(args: list[Any], pool: str, namespace: str) -> list[str]:
    """v0.3.0 EPP flags (camelCase, single dash) as v1.0 flags for the GA pool (with ``--pool-group``)."""
    out: list[str] = []
    items = [str(a) for a in args]
    i = 0
    while i < len(items):
        arg = items[i]
        if arg.startswith("-"):
            key, _, inline = arg.lstrip("-").partition("=")
            value: str | None = inline if inline else None
            if value is None and i + 1 < len(items) and not items[i + 1].startswith("-"):
                value = items[i + 1]
                i += 1
            key = _V1_FLAG_NAMES.get(key, key)
            value = {"pool-name": pool, "pool-namespace": namespace, "pool-group": GA_GROUP}.get(key, value)
            out.append(f"--{key}")
            if value is not None:
                out.append(value)
        else:
            out.append(arg)
        i += 1
    if "--pool-group" not in out:
        out += ["--pool-group", GA_GROUP]
    if "--pool-name" not in out:
        out += ["--pool-name", pool]
    return out
