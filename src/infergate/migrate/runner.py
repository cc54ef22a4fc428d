"""The migration state machine: executes a :class:`Plan` step by step, resumably.

    preflight -> install GA side by side -> wait ready -> baseline
      -> (shift w -> analyse w) for each weight   [fail: roll back, stop | no data: pause]
      -> lock (one-way) -> final route -> verify -> remove preview -> delete preview CRDs -> done

The simple path: preflight -> install GA -> wait ready -> remove preview -> final route ->
delete preview CRDs -> verify (when a GA name would clash with a preview one: remove preview
-> delete preview CRDs -> install GA -> final route -> wait ready -> verify, the source
document's order), with a downtime monitor running from the start to the end. State lives in the ConfigMap ``infergate-migration-<route>`` (:mod:`.state`).

Each step kind has one handler (``STEP_HANDLERS``). The cluster and helm clients are
synchronous: every call to them runs in a worker thread, so that the event loop, which the
downtime monitor and the probes share, never waits on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infergate import api
from infergate.api import yamlload
from infergate.kube.errors import Conflict
from infergate.kube.kinds import Kind
from infergate.migrate.bake import BakeOptions, EppMeter, PrometheusMeter, TrafficMeter, real_traffic_gate
from infergate.migrate.cleanup import preview_census_blockers
from infergate.migrate.cluster import Cluster, ClusterError
from infergate.migrate.events import EventSink, NullSink
from infergate.migrate.exitcodes import EXIT_ERROR, EXIT_OK, EXIT_PAUSED, EXIT_REFUSED, EXIT_ROLLED_BACK
from infergate.migrate.gates import Baseline, GateResult, Window, analyse, baseline_of, overall
from infergate.migrate.helm import Helm, HelmError
from infergate.migrate.lock import LEASE_DURATION_S, LockHeld, MigrationLock, Renewer
from infergate.migrate.plan import (
    Analyse,
    ApplyObjects,
    DeletePreviewCrds,
    FinalRoute,
    InstallCrds,
    InstallPool,
    Lock,
    Plan,
    PoolPlan,
    Preflight,
    RemovePreview,
    Shift,
    Step,
    Verify,
    WaitReady,
    shift_route,
)
from infergate.migrate.plan import (
    Baseline as BaselineStep,
)
from infergate.migrate.probe import DowntimeMonitor, measure
from infergate.migrate.readiness import epp_not_ready
from infergate.migrate.resources import (
    CRDS,
    DEPLOYMENTS,
    GA_POOLS,
    HTTPROUTES,
    PREVIEW_MODELS,
    PREVIEW_POOLS,
    SERVICES,
    Obj,
    meta,
    name_of,
    resource_of,
)
from infergate.migrate.settle import SplitWatch, parent_generation_lag, previous_weight
from infergate.migrate.state import LOCK_ANNOTATION, MigrationState, StateStore
from infergate.migrate.verify import Check, epp_metrics_url, gateway_url, status_checks, traffic_checks
from infergate.util.wait import WaitTimeout, async_wait_until, wait_until

CRD_BUNDLE_DIR = Path(__file__).resolve().parents[3] / "config" / "crd"

REJECTION_GRACE_S = 3.0  # a False condition this long is the gateway's answer, not a transient
SETTLE_PROBES = 20  # probes per window while waiting for the data plane to serve a shift's weights
SETTLE_PROGRESS_S = 2.0  # while it waits: a progress line this often
EPP_WATCH_S = 1.0  # while a step bakes: how often the GA EPPs' readiness is checked between probe windows
RESTORE_TIMEOUT_S = 60.0  # simple path: how long verification waits for the new stack to serve
RESTORE_CONFLICT_ATTEMPTS = 5  # a rollback's route restore: tries when another writer wins the race (409)
RESTORE_CONFLICT_BACKOFF_S = 0.1  # times the attempt, between tries
GITOPS_MANAGERS = ("argocd", "argo-cd", "flux", "kustomize-controller", "helm-controller")
GITOPS_MARKERS = ("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/")


class MigrationError(Exception):
    """A step cannot proceed (the message says which and why)."""


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    force: bool = False
    retry: bool = False  # start again after a rollback
    gateway_url: str | None = None
    epp_metrics: dict[str, str] = field(default_factory=dict)  # pool name -> /metrics URL
    probe_models: tuple[str, ...] = ()  # extra model names to probe (e.g. ones without an InferenceModel)
    analysis_delay_s: float = 1.0  # extra wait once the data plane serves a shift's weights, before measuring
    ready_timeout_s: float = 120.0
    poll_s: float = 0.5
    crd_bundle_dir: Path = CRD_BUNDLE_DIR
    stop_after: str | None = None  # stop (as if interrupted) after this step id; for tests and staged runs
    bake: BakeOptions = field(default_factory=BakeOptions)  # per-step bake time; BakeOptions(fast=True): one window
    lock_identity: str | None = None  # the Lease holder's name (default host/pid)
    lock_duration_s: int = LEASE_DURATION_S


@dataclass
class RunResult:
    exit_code: int
    phase: str
    message: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    downtime: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"exitCode": self.exit_code, "phase": self.phase, "message": self.message, "steps": self.steps,
                "gates": self.gates, "checks": self.checks, "downtime": self.downtime}


Progress = Callable[[str], None]


class Migrator:
    def __init__(self, cluster: Cluster, helm: Helm | None, options: RunOptions,
                 progress: Progress | None = None, events: EventSink | None = None) -> None:
        self.cluster = cluster
        self.events: EventSink = events or NullSink()
        self.helm = helm
        self.options = options
        self.progress = progress or (lambda _: None)
        self.store = StateStore(cluster, dry_run=options.dry_run)
        self._monitor: DowntimeMonitor | None = None
        self._dry_run_crds: set[str] = set()  # CRDs this dry run only pretended to install
        self._renewer: Renewer | None = None
        self._saving: asyncio.Future[MigrationState] | None = None

    # -- entry points --------------------------------------------------------------------------

    async def run(self, plan: Plan | Callable[[], Plan], *, namespace: str | None = None,
                  route: str | None = None) -> RunResult:
        """Run (or resume) the migration of ``plan``'s route. ``plan`` may be a factory, called only
        when no state is recorded for ``namespace``/``route`` (a finished migration has nothing
        left to plan from). One run per namespace at a time (:mod:`.lock`): a second one is
        refused (exit 6) with the holder's name."""
        ns = namespace if callable(plan) else plan.namespace
        if ns is None or self.options.dry_run:  # a dry run writes nothing, not even the Lease
            return await self._run(plan, namespace=namespace, route=route)
        return await self._holding_lock(ns, lambda: self._run(plan, namespace=namespace, route=route))

    async def _holding_lock(self, namespace: str, body: Callable[[], Awaitable[RunResult]]) -> RunResult:
        lock = MigrationLock(self.cluster, namespace, identity=self.options.lock_identity,
                             duration_s=self.options.lock_duration_s)
        try:
            await asyncio.to_thread(lock.acquire)
        except asyncio.CancelledError:  # Ctrl-C while taking it: give it back if the thread got it
            await asyncio.to_thread(lock.release)
            raise
        except LockHeld as exc:
            return RunResult(EXIT_REFUSED, "refused", str(exc))
        except ClusterError as exc:
            return RunResult(EXIT_ERROR, "error", f"cannot take {lock.where}: {exc}")
        self._renewer = Renewer(lock)
        self._renewer.start()
        try:
            return await body()
        finally:
            await self._renewer.stop()
            self._renewer = None
            await asyncio.to_thread(lock.release)

    async def _run(self, plan: Plan | Callable[[], Plan], *, namespace: str | None,
                   route: str | None) -> RunResult:
        state = None
        if not callable(plan):
            state = await asyncio.to_thread(self.store.load, plan.namespace, plan.route)
        elif namespace is not None and route is not None:
            state = await asyncio.to_thread(self.store.load, namespace, route)
        if state is not None and not state.completed and callable(plan):
            state = None  # nothing was done yet (e.g. preflight refused): plan again with the current options
        if state is None:
            concrete = await asyncio.to_thread(plan) if callable(plan) else plan  # a factory reads the cluster
            loaded = await asyncio.to_thread(self.store.load, concrete.namespace, concrete.route)
            state = loaded if loaded is not None and loaded.completed else MigrationState(concrete)
        if state.phase == "done":
            return RunResult(EXIT_OK, "done", f"the migration of HTTPRoute {state.plan.namespace}/"
                             f"{state.plan.route} is already done: nothing to do")
        if state.phase == "rolled-back":
            if not self.options.retry:
                return RunResult(EXIT_ROLLED_BACK, "rolled-back",
                                 "this migration was rolled back: see the report with `infergate migrate status`; "
                                 "start again with --retry", gates=state.report.get("gates", []))
            state = MigrationState(state.plan, history=state.history).transition("running", "retry")
        elif state.phase in ("paused", "interrupted", "failed"):
            state = state.transition("running", "resume")
        return await self._execute(state)

    async def rollback(self, namespace: str, route: str) -> RunResult:
        """Restore the route's original backends (refused while another run holds the Lease)."""
        if self.options.dry_run:
            return await self._rollback(namespace, route)
        return await self._holding_lock(namespace, lambda: self._rollback(namespace, route))

    async def _rollback(self, namespace: str, route: str) -> RunResult:
        state = await asyncio.to_thread(self.store.load, namespace, route)
        if state is None:
            return RunResult(EXIT_ERROR, "none", f"no migration state for HTTPRoute {namespace}/{route}")
        if state.locked and not self.options.force:
            return RunResult(EXIT_REFUSED, state.phase, "the migration is locked (past the point of no return): "
                             "rollback needs --force")
        await asyncio.to_thread(self._restore_route, state.plan)
        await self._save(replace(state, ga_weight=None).transition("rolled-back", "rollback requested"))
        return RunResult(EXIT_OK, "rolled-back", f"HTTPRoute {route} restored to its original backends")

    # -- the machine ---------------------------------------------------------------------------

    async def _execute(self, state: MigrationState) -> RunResult:
        plan = state.plan
        step_ids = [step.id for step in plan.steps]
        if self.options.stop_after is not None and self.options.stop_after not in step_ids:
            # refused before anything is done: a misspelled id would never match, and the run would go to the end
            return RunResult(EXIT_ERROR, "refused", f"--stop-after {self.options.stop_after}: no such step in this "
                             f"plan (its steps: {', '.join(step_ids)})")
        result = RunResult(EXIT_OK, "running", "")
        state = await self._save(state)
        if plan.path == "simple" and self._monitor is None and plan.gates.probes > 0:  # --probes 0: no traffic
            url = await asyncio.to_thread(self._gateway_url, plan)
            if url and plan.model_names:
                self._monitor = DowntimeMonitor(url, plan.model_names[0])
                self._monitor.start()
        try:
            for step in plan.steps:
                if state.done(step.id):
                    result.steps.append({"step": step.id, "status": "done earlier", "detail": step.description})
                    continue
                if self._renewer is not None and self._renewer.lost:
                    state = await self._save(state.transition("interrupted", "lost the migration Lease",
                                                              during=step.id))
                    result.exit_code, result.phase = EXIT_ERROR, "interrupted"
                    result.message = (f"stopped before {step.id}: another run took over the migration Lease of "
                                      f"namespace {plan.namespace} (this run missed its renewals)")
                    return result
                self.progress(f"{step.id}: {step.description}")
                self.events.step_started(step.id, step.description)
                started = time.monotonic()
                outcome = await self._step(step, state, result)
                state = outcome.state
                elapsed = round(time.monotonic() - started, 2)
                self.events.step_finished(step.id, outcome.verdict, outcome.detail, elapsed)
                if outcome.verdict == "pass":
                    state = await self._save(state.complete(step.id, seconds=elapsed, detail=outcome.detail))
                    result.steps.append({"step": step.id, "status": "dry-run" if self.options.dry_run else "done",
                                         "detail": outcome.detail or step.description, "seconds": elapsed})
                    if self.options.stop_after == step.id:
                        result.phase, result.message = state.phase, f"stopped after {step.id} (--stop-after)"
                        return result
                    continue
                result.steps.append({"step": step.id, "status": outcome.verdict, "detail": outcome.detail,
                                     "seconds": elapsed})
                if outcome.verdict == "paused":
                    state = await self._save(state.transition("paused", outcome.detail))
                    result.exit_code, result.phase = EXIT_PAUSED, "paused"
                    result.message = (f"paused at {step.id}: {outcome.detail}; run again to resume, or "
                                      "`infergate migrate rollback`")
                    return result
                # fail
                if not state.locked and plan.path == "zero-downtime" and state.ga_weight is not None:
                    self.progress(f"rolling back HTTPRoute {plan.route} to its original backends")
                    self.events.decided("roll back", outcome.detail)
                    await asyncio.to_thread(self._restore_route, plan)
                    state = replace(state, ga_weight=None)
                    report = {"step": step.id, "gates": result.gates, "checks": result.checks}
                    state = await self._save(replace(state, report=report).transition("rolled-back", outcome.detail))
                    result.exit_code, result.phase = EXIT_ROLLED_BACK, "rolled-back"
                    result.message = (f"{step.id} failed: {outcome.detail}; HTTPRoute {plan.namespace}/{plan.route} "
                                      "was rolled back to the preview pools (the GA stack is kept for debugging)")
                    return result
                state = await self._save(state.transition("failed", outcome.detail))
                result.exit_code, result.phase = EXIT_ERROR, "failed"
                result.message = (f"{step.id} failed (HTTPRoute {plan.namespace}/{plan.route}): {outcome.detail}; "
                                  "fix it and run again to resume")
                return result
            if self.options.dry_run:
                result.phase, result.message = "dry-run", "dry run: every step was sent with dryRun=All; nothing changed"
                return result
            state = await self._save(state.transition("done", "all steps completed"))
            result.phase, result.message = "done", f"HTTPRoute {plan.namespace}/{plan.route} migrated to GA"
            return result
        except asyncio.CancelledError:  # Ctrl-C (asyncio.run cancels the main task) or SIGTERM
            if not self.options.dry_run:
                # a save in flight when the cancellation came still lands: wait for it and record the
                # interruption on top of what the store holds, never on an older state
                if self._saving is not None:
                    with contextlib.suppress(Exception):
                        await self._saving
                latest = await asyncio.to_thread(self.store.load, plan.namespace, plan.route) or state
                during = next((s.id for s in plan.steps if not latest.done(s.id)), "end")
                await self._save(latest.transition("interrupted", f"interrupted during {during}", during=during))
            raise
        finally:
            if self._monitor is not None:
                await self._monitor.stop()
                result.downtime = self._monitor.summary()
                self._monitor = None

    async def _step(self, step: Step, state: MigrationState, result: RunResult) -> _Outcome:
        handler = STEP_HANDLERS.get(type(step))
        if handler is None:
            raise AssertionError(f"unknown step {step!r}")
        try:
            return await handler(self, state, step, result)
        except (ClusterError, HelmError, MigrationError) as exc:
            return _Outcome(state, "fail", str(exc))

    async def _save(self, state: MigrationState) -> MigrationState:
        """Write the state in a worker thread; a cancellation of the caller does not cancel the
        write (it is shielded and kept in ``_saving`` for the interruption handler)."""
        self._saving = asyncio.ensure_future(asyncio.to_thread(self.store.save, state))
        return await asyncio.shield(self._saving)

    # -- steps ---------------------------------------------------------------------------------

    # Steps that only call the cluster and helm: they run in a worker thread (see STEP_HANDLERS).

    def _preflight(self, state: MigrationState, step: Preflight) -> _Outcome:
        plan = state.plan
        route = self.cluster.get(HTTPROUTES, plan.namespace, plan.route)
        if route is None:
            raise MigrationError(f"HTTPRoute {plan.namespace}/{plan.route} not found")
        owner = gitops_owner(route)
        if owner and not self.options.force:
            raise MigrationError(f"HTTPRoute {plan.route} is managed by {owner}: it would revert the weights; "
                                 "pause its sync (or let it own the change) and pass --force")
        if plan.path == "zero-downtime":
            for pool in plan.pools:
                if self.cluster.get(PREVIEW_POOLS, plan.namespace, pool.preview) is None \
                        and not state.done("remove-preview"):
                    raise MigrationError(f"{PREVIEW_POOLS.qualified}/{pool.preview} not found: nothing to shift from")
        if any(p.install == "helm" for p in plan.pools) and not state.done("remove-preview"):
            if self.helm is None:
                raise MigrationError("the plan installs the GA pool with Helm, but no helm binary was found "
                                     "(--helm PATH, or --install objects)")
            others = {(r.name, r.namespace) for r in self.helm.releases(None)}
            for pool in plan.pools:
                if pool.chart is None:
                    continue
                try:  # pullable before anything changes
                    self.helm.show_chart(pool.chart.chart, pool.chart.version)
                except HelmError as exc:
                    hint = (" Without access to that registry, install from a local copy: --chart "
                            "charts/inferencepool --chart-version ''." if pool.chart.chart.startswith("oci://")
                            else "")
                    raise MigrationError(f"the chart {pool.chart.chart} cannot be used: {exc}.{hint}") from exc
                wanted = dict(pool.chart.sets).get("provider.name", "none")
                if pool.preview_release and not self.options.force:
                    values = self.helm.values(pool.preview_release, plan.namespace)
                    provider = values.get("provider")
                    had = str(provider.get("name") or "none") if isinstance(provider, dict) else "none"
                    if had != wanted:
                        raise MigrationError(f"the preview release {pool.preview_release} was installed with "
                                             f"provider.name={had}, the GA release would get {wanted} (no "
                                             f"provider resources such as GKE's HealthCheckPolicy): pass "
                                             f"--provider {had}, or --force")
                clash = sorted(ns for name, ns in others if name == pool.chart.release and ns != plan.namespace)
                if clash:  # the chart's cluster-scoped <release>-epp ClusterRole/Binding would collide
                    raise MigrationError(f"a Helm release {pool.chart.release} exists in namespace {clash[0]}: the "
                                         f"chart's cluster-scoped {pool.chart.release}-epp objects would collide; "
                                         "choose another --pool-name-suffix")
        return _Outcome(state, "pass", "cluster checked" + (f" (owner {owner}, --force)" if owner else ""))

    def _install_crds(self, state: MigrationState, step: InstallCrds) -> _Outcome:
        missing = [n for n in step.names if self.cluster.get(CRDS, None, n) is None]
        if not missing:
            return _Outcome(state, "pass", "GA CRDs already installed")
        bundle = self.options.crd_bundle_dir / "ga.yaml"
        crds = {name_of(d): d for d in yamlload.load_all(bundle.read_text()) if isinstance(d, dict)}
        for name in missing:
            if name not in crds:
                raise MigrationError(f"{bundle} has no CRD {name}")
            self.cluster.apply(CRDS, crds[name], dry_run=self.options.dry_run)
        if self.options.dry_run:
            self._dry_run_crds.update(missing)
        else:
            for name in missing:
                def established(crd_name: str = name) -> bool:
                    return _crd_established(self.cluster.get(CRDS, None, crd_name))

                try:
                    wait_until(established, 30.0, interval=0.1, what=f"CRD {name} Established")
                except WaitTimeout as exc:
                    raise MigrationError(str(exc)) from exc
        return _Outcome(state, "pass", "installed " + ", ".join(missing))

    def _install_pool(self, state: MigrationState, step: InstallPool) -> _Outcome:
        plan = state.plan
        pool = plan.pool(step.pool)
        if pool.install == "helm":
            assert self.helm is not None and pool.chart is not None
            if any(r.name == pool.chart.release for r in self.helm.releases(plan.namespace)):
                repaired = self._repair_epps(replace(plan, pools=(pool,)))
                return _Outcome(state, "pass", f"Helm release {pool.chart.release} already installed"
                                + (f"; repaired: {'; '.join(repaired)}" if repaired else "")
                                + self._set_failure_mode(plan, pool, "FailOpen"))
            try:
                self.helm.install(pool.chart, dry_run=self.options.dry_run)
            except HelmError as exc:
                if "in use" in str(exc) or "in progress" in str(exc):  # a pending (interrupted) install
                    raise MigrationError(
                        f"the GA release {pool.chart.release} in namespace {plan.namespace} is half-installed "
                        f"({exc}); run `helm uninstall {pool.chart.release} -n {plan.namespace}`, then run this "
                        "command again") from exc
                raise
            return _Outcome(state, "pass", pool.chart.command() + self._set_failure_mode(plan, pool, "FailOpen"))
        ga_object = copy.deepcopy(pool.ga_object)
        if pool.fail_open_during:
            ga_object.setdefault("spec", {}).setdefault("endpointPickerRef", {})["failureMode"] = "FailOpen"
        self._apply(GA_POOLS, ga_object)
        created = self._apply_epp(plan, pool)
        return _Outcome(state, "pass", f"applied {GA_POOLS.qualified}/{pool.ga}"
                        + (" (FailOpen until final-route)" if pool.fail_open_during else "")
                        + (f"; {created}" if created else ""))

    def _apply_objects(self, state: MigrationState, step: ApplyObjects) -> _Outcome:
        for obj in step.objects:
            self._apply(resource_of(obj), obj)
        return _Outcome(state, "pass", f"{len(step.objects)} objects applied")

    def _shift(self, state: MigrationState, step: Shift) -> _Outcome:
        plan = state.plan
        self._apply_routes([shift_route(r, plan.pools, step.ga_weight) for r in plan.final_routes])
        self.events.weights_set(100 - step.ga_weight, step.ga_weight)
        return _Outcome(replace(state, ga_weight=step.ga_weight), "pass",
                        f"{100 - step.ga_weight}% preview / {step.ga_weight}% GA")

    def _lock(self, state: MigrationState, step: Lock) -> _Outcome:
        plan = state.plan
        for route in plan.final_routes:
            self.cluster.merge_patch(HTTPROUTES, plan.namespace, name_of(route),
                                     {"metadata": {"annotations": {LOCK_ANNOTATION: "true"}}},
                                     dry_run=self.options.dry_run)
        return _Outcome(replace(state, locked=True).transition("locked", "all weights passed"), "pass", "locked")

    def _set_failure_mode(self, plan: Plan, pool: PoolPlan, mode: str) -> str:
        """Merge-patch the GA pool's endpointPickerRef.failureMode (pools not FailOpen during the
        migration are left alone); a note for the step's detail."""
        if not pool.fail_open_during:
            return ""
        if self.options.dry_run and self.cluster.get(GA_POOLS, plan.namespace, pool.ga) is None:
            return f"; would set failureMode {mode}"
        self.cluster.merge_patch(GA_POOLS, plan.namespace, pool.ga,
                                 {"spec": {"endpointPickerRef": {"failureMode": mode}}}, dry_run=self.options.dry_run)
        return f"; {GA_POOLS.qualified}/{pool.ga} failureMode {mode}"

    def _final_route(self, state: MigrationState, step: FinalRoute) -> _Outcome:
        restored = "".join(self._set_failure_mode(state.plan, p, p.final_failure_mode) for p in state.plan.pools)
        routes = []
        for route in state.plan.final_routes:
            final = copy.deepcopy(route)
            if state.locked:
                final.setdefault("metadata", {}).setdefault("annotations", {})[LOCK_ANNOTATION] = "true"
            routes.append(final)
        self._apply_routes(routes)
        return _Outcome(replace(state, ga_weight=100), "pass", "GA pools only" + restored)

    def _apply_epp(self, plan: Plan, pool: PoolPlan) -> str:
        """The GA pool's EPP (computed at planning time from the preview EPP, v1.0 flags) with its
        ServiceAccount, Role and RoleBinding, in the plan's order (the Service last: once it exists,
        a resumed or retried run leaves the EPP and its RBAC as they are)."""
        service = self.cluster.get(SERVICES, plan.namespace, pool.ga_epp)
        if service is not None and not pool.ga_epp_objects:
            return f"EPP Service {pool.ga_epp} exists"
        if not pool.ga_epp_objects:
            raise MigrationError(f"the GA pool {pool.ga} needs an EPP Service {pool.ga_epp}: none exists and no "
                                 f"preview EPP (Service {pool.preview_epp}, a Deployment with -poolName "
                                 f"{pool.preview}) was found to copy; create it or use --install helm")
        if service is not None:  # installed before: only what was deleted since is applied again
            missing = [o for o in pool.ga_epp_objects
                       if self.cluster.get(resource_of(o), plan.namespace, name_of(o)) is None]
            for obj in missing:
                self._apply(resource_of(obj), obj)
            return "" if not missing else ("recreated the missing " + ", ".join(
                f"{o.get('kind')} {name_of(o)}" for o in missing) + " of the GA EPP")
        for obj in pool.ga_epp_objects:
            self._apply(resource_of(obj), obj)
        kinds = [str(o.get("kind")) for o in pool.ga_epp_objects]
        rbac = [k for k in kinds if k not in ("Deployment", "Service")]
        return (f"EPP Deployment/Service {pool.ga_epp} created from the preview EPP's"
                + (f", with its own {'/'.join(rbac)} {pool.ga_epp}" if rbac else ""))

    def _apply(self, resource: Kind, obj: Obj) -> None:
        """Server-side apply (a server-side dry run under ``--dry-run``).

        A dry run installs no CRD, so the server cannot take an object whose CRD this run
        would install first: such objects are validated here as the API server would
        (infergate.api) instead, and a problem fails the dry run like a real one.
        """
        if self.options.dry_run and resource.qualified in self._dry_run_crds:
            errors = api.validate(obj)
            if errors:
                name = (obj.get("metadata") or {}).get("name", "")
                raise MigrationError(f"{resource.kind} {name!r} is invalid: " + "; ".join(str(e) for e in errors))
            return
        self.cluster.apply(resource, obj, dry_run=self.options.dry_run)

    def _remove_preview(self, state: MigrationState, step: RemovePreview) -> _Outcome:
        plan = state.plan
        done: list[str] = []
        dry = self.options.dry_run
        for pool in plan.pools:
            if pool.preview_release:
                if self.helm is None:
                    raise MigrationError(f"the preview pool {pool.preview} belongs to Helm release "
                                         f"{pool.preview_release}: helm is needed to uninstall it (--helm PATH)")
                releases = {r.name for r in self.helm.releases(plan.namespace)}
                if pool.preview_release in releases:
                    self.helm.uninstall(pool.preview_release, plan.namespace, dry_run=dry)
                    done.append(f"helm uninstall {pool.preview_release}")
            if self.cluster.delete(PREVIEW_POOLS, plan.namespace, pool.preview, dry_run=dry):
                done.append(f"deleted {PREVIEW_POOLS.qualified}/{pool.preview}")
        for model in plan.preview_models:
            if self.cluster.delete(PREVIEW_MODELS, plan.namespace, model, dry_run=dry):
                done.append(f"deleted {PREVIEW_MODELS.qualified}/{model}")
        for deployment in plan.preview_epp_deployments:
            if self.cluster.delete(DEPLOYMENTS, plan.namespace, deployment, dry_run=dry):
                done.append(f"deleted Deployment {deployment}")
        for pool in plan.pools:
            if pool.install == "objects" and self.cluster.delete(SERVICES, plan.namespace, pool.preview_epp,
                                                                  dry_run=dry):
                done.append(f"deleted Service {pool.preview_epp}")
        stuck = []
        for pool in plan.pools:
            obj = self.cluster.get(PREVIEW_POOLS, plan.namespace, pool.preview)
            if obj is not None and not dry:
                stuck.append(f"{PREVIEW_POOLS.qualified}/{pool.preview} finalizers {meta(obj).get('finalizers')}")
        for model in plan.preview_models:
            obj = self.cluster.get(PREVIEW_MODELS, plan.namespace, model)
            if obj is not None and not dry:
                stuck.append(f"{PREVIEW_MODELS.qualified}/{model} finalizers {meta(obj).get('finalizers')}")
        detail = "; ".join(done) or "nothing left to remove"
        if stuck:
            detail += "; still terminating (finalizers, no controller removes them): " + "; ".join(stuck)
        return _Outcome(state, "pass", detail)

    def _delete_crds(self, state: MigrationState, step: DeletePreviewCrds) -> _Outcome:
        blockers = preview_census_blockers(self.cluster)
        if blockers and not self.options.force:
            return _Outcome(state, "pass", "preview CRDs kept: still in use (" + "; ".join(blockers)
                            + "); run `infergate migrate cleanup` once they are migrated")
        deleted = [n for n in step.names if self.cluster.delete(CRDS, None, n, dry_run=self.options.dry_run)]
        return _Outcome(state, "pass", ("deleted " + ", ".join(deleted)) if deleted else "preview CRDs already gone")

    # Steps that wait or measure: coroutines on the loop, their cluster calls in a worker thread.

    async def _wait_ready(self, state: MigrationState, step: WaitReady, result: RunResult) -> _Outcome:
        plan = state.plan
        if self.options.dry_run:
            return _Outcome(state, "pass", "dry run: not waited")
        repaired = await asyncio.to_thread(self._repair_epps, plan)
        for what in repaired:
            self.progress(f"  repaired: {what}")
        started = time.monotonic()
        pending: list[str] = []

        async def ready() -> bool:
            nonlocal pending
            pending = await asyncio.to_thread(self._ga_not_ready, plan)
            return not pending

        if not await _poll(ready, min(step.timeout_s, self.options.ready_timeout_s), self.options.poll_s,
                           "the GA EPPs"):
            return _Outcome(state, "fail", "not ready: " + "; ".join(pending))
        return _Outcome(state, "pass", f"GA EPPs ready after {time.monotonic() - started:.1f} s (Deployment "
                        "Available, ready endpoints behind the EPP Service)"
                        + (f"; repaired: {'; '.join(repaired)}" if repaired else ""))

    async def _baseline(self, state: MigrationState, step: BaselineStep, result: RunResult) -> _Outcome:
        window = await self._measure(state.plan)
        if window is None:
            return _Outcome(state, "pass", "no gateway address: baseline not measured (analysis will pause)")
        baseline = baseline_of(window)
        detail = (f"{len(window.samples)} probes, p99 TTFT "
                  f"{'-' if baseline.p99_ttft_s is None else f'{baseline.p99_ttft_s * 1000:.1f} ms'}, statuses "
                  + ", ".join(f"{m}: {s}" for m, s in sorted(baseline.model_status.items())))
        return _Outcome(replace(state, baseline=baseline.to_dict()), "pass", detail)

    async def _analyse(self, state: MigrationState, step: Analyse, result: RunResult) -> _Outcome:
        plan = state.plan
        if self.options.dry_run:
            return _Outcome(state, "pass", "dry run: not analysed")
        drift = await asyncio.to_thread(self._drift, plan, step.ga_weight)
        if drift:
            return _Outcome(state, "fail", drift)
        # Status first, for this generation of the routes: the gateway must accept both groups and
        # resolve every backend.
        routes = [name_of(r) for r in plan.final_routes]
        lagging = await self._wait_route_generation(plan, routes)
        if lagging:
            stale = GateResult("data-plane", "fail", f"the gateway controller did not process the shift to "
                               f"{step.ga_weight}% within {self.options.ready_timeout_s:g} s (--ready-timeout): "
                               + "; ".join(lagging))
            return self._judged(state, step, result, [stale])
        checks = await self._wait_checks(plan, routes)
        result.checks = [c.to_dict() for c in checks]
        bad = [c for c in checks if not c.ok]
        if bad:
            return _Outcome(state, "fail", "; ".join(f"{c.name}: {c.detail}" for c in bad))
        # Then the data plane: the split the gateway serves must be the new weights' (a fixed delay
        # was not enough on a busy controller: the analysis judged the old split and rolled back).
        served = await self._wait_split(plan, step)
        if served.verdict == "fail":
            return self._judged(state, step, result, [served])
        await asyncio.sleep(self.options.analysis_delay_s)  # --analysis-delay: extra, on top
        bake = self.options.bake
        meter, source = await asyncio.to_thread(self._traffic_meter, plan)
        if meter is not None:
            await meter.start()
        started = time.monotonic()
        baseline = Baseline.from_dict(state.baseline) if state.baseline else None
        gates, probes_sent = await self._probe_gates(plan, step, baseline)
        windows = 1
        while not bake.fast and overall(gates) == "pass":
            left = bake.duration_s - (time.monotonic() - started)
            if left <= 0:
                break
            lost = await self._watch_ga_epps(plan, min(bake.probe_interval_s, left))
            if lost:
                gates.append(GateResult("epp-ready", "fail", "; ".join(lost)))
                break
            drift = await asyncio.to_thread(self._drift, plan, step.ga_weight)
            if drift:
                return _Outcome(state, "fail", drift)
            gates, sent = await self._probe_gates(plan, step, baseline)
            probes_sent += sent
            windows += 1
        if not bake.fast and meter is not None and overall(gates) == "pass":
            traffic = await meter.read()
            gates.append(real_traffic_gate(traffic, [(p.preview, p.ga) for p in plan.pools], probes_sent,
                                           bake.min_requests, plan.gates.min_success_rate, source))
        if not bake.fast:
            gates.append(GateResult("bake", "pass" if overall(gates) == "pass" else overall(gates),
                                    f"{time.monotonic() - started:.0f} s at {step.ga_weight}% GA, {windows} probe "
                                    f"windows ({probes_sent} probes)"))
        return self._judged(state, step, result, [served, *gates])

    def _judged(self, state: MigrationState, step: Analyse, result: RunResult, gates: list[GateResult]) -> _Outcome:
        """The analysis's outcome from its gates, recorded in the result, the events and the progress."""
        result.gates = [{"weight": step.ga_weight, **g.to_dict()} for g in gates]
        self.events.gates_measured(step.ga_weight, [g.to_dict() for g in gates])
        verdict = overall(gates)
        detail = "; ".join(f"{g.gate} {g.verdict}: {g.detail}" for g in gates)
        for g in gates:
            self.progress(f"  {g.gate}: {g.verdict} ({g.detail})")
        return _Outcome(state, verdict, detail)

    async def _watch_ga_epps(self, plan: Plan, seconds: float) -> list[str]:
        """Between two probe windows, check every ``EPP_WATCH_S`` that each GA EPP still has an
        Available Deployment and ready endpoints; what went missing (empty: all well). A dead GA
        EPP fails the step at once instead of at the next window."""
        deadline = time.monotonic() + seconds
        while True:
            lost = await asyncio.to_thread(
                lambda: [m for p in plan.pools for m in epp_not_ready(self.cluster, plan.namespace, p.ga_epp)])
            left = deadline - time.monotonic()
            if lost or left <= 0:
                return lost
            await asyncio.sleep(min(EPP_WATCH_S, left))

    async def _probe_gates(self, plan: Plan, step: Analyse, baseline: Baseline | None) -> tuple[list[GateResult], int]:
        """One probe window judged by the gates (a latency-only failure confirmed by another
        window); the gates and the number of probes sent."""
        gates: list[GateResult] = []
        sent = 0
        for attempt in range(plan.gates.latency_windows):
            window = await self._measure(plan)
            if window is None:
                return [GateResult("traffic", "paused", "no gateway address (--gateway-url)")], sent
            sent += len(window.samples)
            gates = analyse(window, baseline, step.ga_weight, [(p.preview, p.ga) for p in plan.pools], plan.gates)
            failed = {g.gate for g in gates if g.verdict == "fail"}
            if failed != {"p99-ttft"}:
                break
            # latency alone: confirm with another window before rolling back (a p99 of a few dozen
            # probes is noisy), as Flagger counts failed checks against a threshold
            self.progress(f"  p99-ttft failed in window {attempt + 1}; measuring again")
        return gates, sent

    def _traffic_meter(self, plan: Plan) -> tuple[TrafficMeter | None, str]:
        """Where the step's real traffic is read: Prometheus (--prometheus-url), else the EPPs' /metrics."""
        bake = self.options.bake
        if bake.fast:
            return None, ""
        if bake.prometheus_url:
            epps = {name: epp for p in plan.pools for name, epp in ((p.preview, p.preview_epp), (p.ga, p.ga_epp))}
            return PrometheusMeter(bake.prometheus_url, plan.namespace, epps), f"Prometheus {bake.prometheus_url}"
        urls = self._epp_urls(plan)
        return (EppMeter(urls), "the EPPs' /metrics") if urls else (None, "")

    async def _verify(self, state: MigrationState, step: Verify, result: RunResult) -> _Outcome:
        plan = state.plan
        if self.options.dry_run:
            return _Outcome(state, "pass", "dry run: not verified")
        checks = await self._wait_checks(plan, [name_of(r) for r in plan.final_routes])
        if self._monitor is not None and not await self._monitor.wait_restored(RESTORE_TIMEOUT_S):
            return _Outcome(state, "fail", f"service not restored within {RESTORE_TIMEOUT_S:.0f} s after the GA "
                                           f"install: {self._monitor.summary()}")
        url = await asyncio.to_thread(self._gateway_url, plan)
        models = list(plan.model_names) + list(self.options.probe_models)
        if url and models and plan.gates.probes > 0:
            urls = await asyncio.to_thread(self._epp_urls, plan, ga_only=True)
            checks += await traffic_checks(url, models[:len(plan.model_names) or 1], plan.gates.probes, urls,
                                           {p.ga: 1.0 / len(plan.pools) for p in plan.pools}
                                           if len(plan.pools) == 1 else {})
        result.checks = [c.to_dict() for c in checks]
        bad = [c for c in checks if not c.ok]
        if bad:
            return _Outcome(state, "fail", "; ".join(f"{c.name}: {c.detail}" for c in bad))
        return _Outcome(state, "pass", f"{len(checks)} checks passed")

    # -- helpers -------------------------------------------------------------------------------

    def _apply_routes(self, routes: list[Obj]) -> None:
        for route in routes:
            self.cluster.apply(HTTPROUTES, route, dry_run=self.options.dry_run)

    def _restore_route(self, plan: Plan) -> None:
        """The route as it was before the migration. The PUT carries the resourceVersion just read;
        a write between the read and the PUT (a gateway controller's status, a GitOps sync) makes it
        409 Conflict, and the read and PUT are tried again, as client-go's RetryOnConflict does:
        a rollback must not fail on a status update."""
        for attempt in range(1, RESTORE_CONFLICT_ATTEMPTS + 1):
            original = copy.deepcopy(plan.original_route)
            current = self.cluster.get(HTTPROUTES, plan.namespace, plan.route)
            if current is None:
                self.cluster.apply(HTTPROUTES, original, dry_run=self.options.dry_run)
                break
            original.setdefault("metadata", {})["resourceVersion"] = meta(current).get("resourceVersion")
            try:
                self.cluster.replace(HTTPROUTES, original, dry_run=self.options.dry_run)
                break
            except Conflict:
                if attempt == RESTORE_CONFLICT_ATTEMPTS:
                    raise
                time.sleep(RESTORE_CONFLICT_BACKOFF_S * attempt)
        for extra in plan.final_routes[1:]:  # continuation routes exist only in the converted form
            self.cluster.delete(HTTPROUTES, plan.namespace, name_of(extra), dry_run=self.options.dry_run)

    def _gateway_url(self, plan: Plan) -> str | None:
        if self.options.gateway_url:
            return self.options.gateway_url.rstrip("/")
        route = self.cluster.get(HTTPROUTES, plan.namespace, plan.route)
        return None if route is None else gateway_url(self.cluster, plan.namespace, route)

    def _epp_urls(self, plan: Plan, *, ga_only: bool = False) -> dict[str, str]:
        urls: dict[str, str] = {}
        for pool in plan.pools:
            for name, svc in ((pool.preview, pool.preview_epp), (pool.ga, pool.ga_epp)):
                if ga_only and name == pool.preview:
                    continue
                url = self.options.epp_metrics.get(name) or epp_metrics_url(self.cluster, plan.namespace, svc)
                if url is None:
                    return {}
                urls[name] = url
        return urls

    def _ga_not_ready(self, plan: Plan) -> list[str]:
        """What keeps the GA pools from serving (empty: ready): the pool, its EPP Deployment
        Available and ready endpoints behind its EPP Service (:mod:`.readiness`)."""
        pending: list[str] = []
        for pool in plan.pools:
            if self.cluster.get(GA_POOLS, plan.namespace, pool.ga) is None:
                pending.append(f"{GA_POOLS.qualified} {plan.namespace}/{pool.ga} missing")
            pending += epp_not_ready(self.cluster, plan.namespace, pool.ga_epp)
        return pending

    def _repair_epps(self, plan: Plan) -> list[str]:
        """Recreate what is missing of each GA pool's EPP (its Deployment or Service deleted, a
        half-installed release): ``helm upgrade`` of the GA release (Helm creates the objects of
        its manifest that are gone), or the missing objects of the copied EPP. What was done."""
        repaired: list[str] = []
        for pool in plan.pools:
            gone = [what for what, res in (("Deployment", DEPLOYMENTS), ("Service", SERVICES))
                    if self.cluster.get(res, plan.namespace, pool.ga_epp) is None]
            if not gone:
                continue
            if pool.install == "helm":
                assert pool.chart is not None
                release = next((r for r in self.helm.releases(plan.namespace) if r.name == pool.chart.release),
                               None) if self.helm is not None else None
                if self.helm is None or release is None:
                    continue  # install-pool installs it
                try:
                    self.helm.upgrade(pool.chart, dry_run=self.options.dry_run)
                except HelmError as exc:
                    raise MigrationError(
                        f"the GA release {pool.chart.release} in namespace {plan.namespace} lacks its EPP "
                        f"{'/'.join(gone)} {pool.ga_epp} and `helm upgrade` could not repair it ({exc}); run "
                        f"`helm uninstall {pool.chart.release} -n {plan.namespace}`, then `infergate migrate run "
                        f"-n {plan.namespace} --route {plan.route} --retry`") from exc
                repaired.append(f"helm upgrade {pool.chart.release} (EPP {'/'.join(gone)} {pool.ga_epp} was missing)")
            else:
                created = self._apply_epp(plan, pool)
                if created:
                    repaired.append(created)
        return repaired

    def _drift(self, plan: Plan, ga_weight: int) -> str | None:
        """Another writer (Argo CD, Flux, a person) changed the weights since the shift to ``ga_weight``."""
        for expected in (shift_route(r, plan.pools, ga_weight) for r in plan.final_routes):
            current = self.cluster.get(HTTPROUTES, plan.namespace, name_of(expected))
            want, have = _backend_weights(expected), _backend_weights(current or {})
            if want != have:
                return (f"drift: HTTPRoute {name_of(expected)} was changed by another writer since the shift to "
                        f"{ga_weight}% (backendRefs {have}, expected {want})")
        return None

    def _probe_targets(self, plan: Plan) -> tuple[str | None, dict[str, str]]:
        """The gateway URL (None: unknown) and each pool's EPP /metrics URL."""
        url = self._gateway_url(plan)
        return (url, {}) if url is None else (url, self._epp_urls(plan))

    async def _measure(self, plan: Plan) -> Window | None:
        url, epp_urls = await asyncio.to_thread(self._probe_targets, plan)
        if url is None:
            return None
        return await measure(url, self._probe_models(plan), plan.gates.probes, epp_urls)

    def _probe_models(self, plan: Plan) -> list[str]:
        return list(plan.model_names) + [m for m in self.options.probe_models if m not in plan.model_names]

    async def _wait_route_generation(self, plan: Plan, routes: list[str]) -> list[str]:
        """Wait (``--ready-timeout``) until every parent's status of ``routes`` was written for the
        route's current generation (:func:`.settle.parent_generation_lag`); what still lags at the
        deadline (empty: current)."""
        lagging: list[str] = []
        announced = False

        async def current() -> bool:
            nonlocal lagging, announced
            found = await asyncio.to_thread(
                lambda: [(r, self.cluster.get(HTTPROUTES, plan.namespace, r)) for r in routes])
            lagging = [f"HTTPRoute {name} {lag}" for name, route in found for lag in parent_generation_lag(route or {})]
            if lagging and not announced:
                announced = True
                self.progress(f"  waiting for the gateway controller: {lagging[0]}")
            return not lagging

        await _poll(current, self.options.ready_timeout_s, self.options.poll_s, "the routes' status generation")
        return lagging

    async def _wait_split(self, plan: Plan, step: Analyse) -> GateResult:
        """Wait (``--ready-timeout``) until the gateway demonstrably splits as ``step``'s weight says:
        probe windows of up to ``SETTLE_PROBES`` requests, judged from the EPPs' counters by
        :class:`.settle.SplitWatch`. Where the split cannot be observed (no probes, no gateway
        address, EPP metrics unreachable, no request reaching an EPP) it passes at once with a
        note: the gates that follow judge that case as before."""
        started = time.monotonic()
        count = min(plan.gates.probes, SETTLE_PROBES)
        url, epp_urls = (None, {}) if count <= 0 else await asyncio.to_thread(self._probe_targets, plan)
        if count <= 0 or url is None or not epp_urls:
            why = ("no probes (--probes 0)" if count <= 0 else "no gateway address" if url is None
                   else "no EPP metrics address")
            return GateResult("data-plane", "pass", f"route status current; split not observed: {why}")
        pairs = [(p.preview, p.ga) for p in plan.pools]
        watch = SplitWatch.start(pairs, step.ga_weight, previous_weight(plan.weights, step.ga_weight),
                                 plan.gates.attribution_floor)
        windows, sent, said = 0, 0, started
        while True:
            window = await measure(url, self._probe_models(plan), count, epp_urls)
            windows, sent = windows + 1, sent + len(window.samples)
            elapsed = time.monotonic() - started
            probes = f"{sent} settling probes in {windows} window{'s' if windows > 1 else ''}"
            if window.pool_requests is None:
                return GateResult("data-plane", "pass", "route status current; split not observed: EPP metrics "
                                  f"of {', '.join(window.unreachable)} unreachable ({probes})")
            watch = watch.observe(window.pool_requests)
            if watch.settled:
                return GateResult("data-plane", "pass", f"serves {step.ga_weight}% GA after {elapsed:.1f} s "
                                  f"({probes}): {watch.describe()}")
            if watch.requests <= 0:
                return GateResult("data-plane", "pass", "route status current; split not observed: no probe "
                                  f"reached an EPP ({probes})")
            if elapsed >= self.options.ready_timeout_s:
                return GateResult("data-plane", "fail", f"the gateway did not serve the {step.ga_weight}% GA "
                                  f"weights within {self.options.ready_timeout_s:g} s (--ready-timeout; {probes}): "
                                  f"{watch.describe()}")
            if windows == 1 or time.monotonic() - said >= SETTLE_PROGRESS_S:
                said = time.monotonic()
                self.progress(f"  waiting for the data plane to serve {step.ga_weight}% GA ({elapsed:.1f} s): "
                              f"{watch.describe()}")

    async def _wait_checks(self, plan: Plan, routes: list[str]) -> list[Check]:
        """Status checks until all pass, or until the deadline; a rejection the gateway keeps
        reporting for ``REJECTION_GRACE_S`` (a condition with status False, not just absent)
        ends the wait early."""
        checks: list[Check] = []
        rejected_since: float | None = None

        async def settled() -> bool:
            nonlocal checks, rejected_since
            checks = await asyncio.to_thread(status_checks, self.cluster, plan.namespace, routes)
            if all(c.ok for c in checks):
                return True
            if not any(not c.ok and c.detail.startswith("False") for c in checks):
                rejected_since = None
                return False
            now = time.monotonic()
            rejected_since = rejected_since or now
            return now - rejected_since >= REJECTION_GRACE_S

        await _poll(settled, self.options.ready_timeout_s, self.options.poll_s, "the route and pool statuses")
        return checks


@dataclass(frozen=True)
class _Outcome:
    state: MigrationState
    verdict: str  # pass | fail | paused
    detail: str = ""


StepHandler = Callable[[Migrator, MigrationState, Any, RunResult], Awaitable[_Outcome]]


def _in_worker_thread(run_step: Callable[[Migrator, MigrationState, Any], _Outcome]) -> StepHandler:
    """A step that only calls the synchronous cluster and helm clients, run in a worker thread:
    the event loop (the downtime monitor, the probes) keeps running while it waits on them."""

    async def handler(migrator: Migrator, state: MigrationState, step: Any, _result: RunResult) -> _Outcome:
        return await asyncio.to_thread(run_step, migrator, state, step)

    return handler


# One handler per step kind of the plan (:data:`infergate.migrate.plan.STEP_TYPES`).
STEP_HANDLERS: dict[type[Step], StepHandler] = {
    Preflight: _in_worker_thread(Migrator._preflight),
    InstallCrds: _in_worker_thread(Migrator._install_crds),
    InstallPool: _in_worker_thread(Migrator._install_pool),
    ApplyObjects: _in_worker_thread(Migrator._apply_objects),
    WaitReady: Migrator._wait_ready,
    BaselineStep: Migrator._baseline,
    Shift: _in_worker_thread(Migrator._shift),
    Analyse: Migrator._analyse,
    Lock: _in_worker_thread(Migrator._lock),
    FinalRoute: _in_worker_thread(Migrator._final_route),
    Verify: Migrator._verify,
    RemovePreview: _in_worker_thread(Migrator._remove_preview),
    DeletePreviewCrds: _in_worker_thread(Migrator._delete_crds),
}


async def _poll(condition: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float, what: str) -> bool:
    """True once ``condition`` holds, False when ``timeout_s`` passes first."""
    try:
        held: bool = await async_wait_until(condition, timeout_s, interval=interval_s, what=what)
    except WaitTimeout:
        return False
    return held


def _backend_weights(route: Obj) -> list[list[tuple[str, str, int]]]:
    return [[(str(r.get("group", "")), str(r.get("name")), int(r.get("weight", 1))) for r in rule.get("backendRefs") or []]
            for rule in (route.get("spec") or {}).get("rules") or []]


def _crd_established(crd: Obj | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def gitops_owner(obj: Obj) -> str | None:
    """The GitOps controller that manages ``obj`` (and would revert weight changes), if any."""
    m = meta(obj)
    for key in list(m.get("annotations") or {}) + list(m.get("labels") or {}):
        if key.startswith(GITOPS_MARKERS):
            return str(key).split("/", 1)[0]
    for entry in m.get("managedFields") or []:
        manager = str(entry.get("manager", "")).lower()
        if any(g in manager for g in GITOPS_MANAGERS):
            return str(entry.get("manager"))
    return None
