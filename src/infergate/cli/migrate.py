"""`infergate migrate`: check, plan, run, verify, clean up the preview -> GA migration."""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from infergate.util.signals import Stopped, run_until_stopped

# how long an interrupted run may take to record where it stopped (and give the Lease back)
STOP_GRACE_S = 20.0

OUTPUT = click.option("-o", "--output", "output", type=click.Choice(["table", "json", "yaml"]), default="table",
                      show_default=True, help="Output format.")


def _cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--kubeconfig", type=click.Path(dir_okay=False), envvar="KUBECONFIG",
                     help="Kubeconfig file (default $KUBECONFIG, ~/.kube/config).")(f)
    f = click.option("--context", help="Kubeconfig context.")(f)
    f = click.option("--helm", "helm_path", type=click.Path(dir_okay=False),
                     help="helm binary (default: .tools/bin/helm, then $PATH).")(f)
    return f


def _namespace_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("-n", "--namespace", help="Namespace (default: the context's namespace, or 'default').")(f)
    f = click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")(f)
    return f


def _plan_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--path", "path", type=click.Choice(["simple", "zero-downtime"]), default="zero-downtime",
                     show_default=True, help="simple: install GA and wait until ready, remove preview, switch the route at once (a "
                     "short downtime); zero-downtime: side by side, shift weights with analysis."),
        click.option("--route", help="The HTTPRoute to migrate (default: the only one using preview pools)."),
        click.option("--steps", default="0,50,100", show_default=True,
                     help="GA weight steps in percent (100 is always last)."),
        click.option("--pool-name-suffix", default="-ga", show_default=True,
                     help="GA pool name: '-preview' is replaced by it, else it is appended."),
        click.option("--install", type=click.Choice(["auto", "helm", "objects"]), default="auto", show_default=True,
                     help="How to install the GA pool: helm (the inferencepool chart) when the preview pool came "
                     "from Helm, else objects (pool + a copy of the preview EPP with v1.0 flags)."),
        click.option("--chart", default=None, help="inferencepool chart (default: the source document's OCI chart; "
                     "offline: --chart charts/inferencepool --chart-version '')."),
        click.option("--chart-version", default="v1.0.0", show_default=True, help="Chart version ('' for none)."),
        click.option("--provider", default="none", show_default=True, help="Chart provider.name (gke, none)."),
        click.option("--unknown-models", type=click.Choice(["serve", "reject"]), default="serve", show_default=True,
                     help="Models without an InferenceModel: serve (GA default) or reject with 404 (as preview)."),
        click.option("--target-models", default=None,
                     type=click.Choice(["auto", "route", "rewrite", "backend-refs", "rewrite-resource", "heaviest"]),
                     help="InferenceModels with several targetModels: route (= backend-refs: weighted HTTPRoute "
                     "backendRefs), rewrite (= rewrite-resource: an InferenceModelRewrite, refused when the cluster "
                     "serves no such CRD), auto (rewrite where served, else route), heaviest (default: route)."),
        click.option("--probes", type=click.IntRange(min=0), default=60, show_default=True, help="Probe requests per analysis (0: send no traffic at all: no analysis "
                     "probes, no downtime measurement on the simple path)."),
        click.option("--min-success-rate", type=click.FloatRange(0.0, 1.0), default=0.99, show_default=True),
        click.option("--p99-ttft-factor", type=click.FloatRange(min=0.0, min_open=True), default=1.5, show_default=True,
                     help="Allowed p99 TTFT growth over the baseline."),
        click.option("--allow-unknown-models-served", is_flag=True,
                     help="Accept (and report) that GA serves models the preview EPP answered 404 for."),
        click.option("--no-attribution", is_flag=True, help="Do not require per-pool evidence from EPP metrics."),
        click.option("--fail-open-during-migration/--fail-close-during-migration", "fail_open_during", default=True,
                     show_default=True, help="zero-downtime: install the GA pools FailOpen and restore their failure "
                     "mode at final-route, so that a GA EPP that dies while both pools serve costs no request "
                     "(docs/migrate.md has the measurements)."),
    ]):
        f = option(f)
    return f


def _target(kubeconfig: str | None, context: str | None) -> Any:
    from infergate.migrate.cluster import ClusterTarget

    return ClusterTarget(kubeconfig, context)


def _connect(kubeconfig: str | None, context: str | None) -> Any:
    """The command's cluster connection, closed when the command ends (its client's loop thread
    and HTTP session: a command run in-process, as by a test or an embedding tool, leaks none)."""
    from infergate.migrate.cluster import ClusterError, KubeCluster

    try:
        cluster = KubeCluster.connect(_target(kubeconfig, context))
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc
    click.get_current_context().call_on_close(cluster.close)
    return cluster


def _helm(helm_path: str | None, kubeconfig: str | None, context: str | None) -> Any:
    from infergate.migrate.helm import Helm, find_helm

    binary = find_helm(helm_path)
    return None if binary is None else Helm(binary, _target(kubeconfig, context))


def _default_namespace(kubeconfig: str | None, context: str | None) -> str:
    # imported on use, like every command's dependencies here: `infergate --help` stays fast
    from infergate.kube.config import kubeconfig_namespace
    from infergate.kube.errors import KubeError

    try:
        return kubeconfig_namespace(kubeconfig, context)
    except KubeError:
        return "default"


def _plan_options_from(kw: dict[str, Any]) -> Any:
    from infergate.migrate.helm import OCI_CHART
    from infergate.migrate.plan import Gates, PlanError, PlanOptions

    try:
        weights = tuple(int(x) for x in str(kw["steps"]).split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{kw['steps']!r}: comma-separated integers", param_hint="--steps") from None
    gates = Gates(probes=kw["probes"], min_success_rate=kw["min_success_rate"],
                  p99_ttft_factor=kw["p99_ttft_factor"],
                  allow_unknown_models_served=kw["allow_unknown_models_served"],
                  require_attribution=not kw["no_attribution"])
    try:
        from infergate.migrate.plan import validate_weights

        validate_weights(weights)
    except PlanError as exc:
        raise click.BadParameter(str(exc).removeprefix("--steps: "), param_hint="--steps") from None
    return PlanOptions(path=kw["path"], weights=weights, pool_name_suffix=kw["pool_name_suffix"],
                       install=kw["install"], chart=kw["chart"] or OCI_CHART,
                       chart_version=kw["chart_version"] or None, provider=kw["provider"],
                       unknown_models=kw["unknown_models"], target_models=kw["target_models"], gates=gates,
                       fail_open_during_migration=kw["fail_open_during"])


class _MigrateGroup(click.Group):
    """A cluster call that fails where a command does not expect it (the API server unreachable,
    refusing, not answering) ends that command with the call and the reason in one line, exit 1,
    instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from infergate.kube.errors import KubeError

        try:
            return super().invoke(ctx)
        except KubeError as exc:
            raise click.ClickException(str(exc)) from None


@click.group("migrate", cls=_MigrateGroup, context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Migrate a live installation from the preview API (inference.networking.x-k8s.io/v1alpha2,
    GIE v0.3.0) to GA (inference.networking.k8s.io/v1, GIE v1.0).

    \b
    infergate migrate check -A                       # is a migration needed? (exit 3: yes)
    infergate migrate plan -n prod                   # the steps, the GA objects, what is lossy
    infergate migrate run -n prod                    # zero-downtime: 0 -> 50 -> 100 with analysis
    infergate migrate run -n prod --path simple      # install, remove, switch, verify; reports the downtime
    infergate migrate verify -n prod --route llm-route
    infergate migrate cleanup -n prod                # preview leftovers, then the preview CRDs
    infergate migrate llm-d -n prod --install-crds   # x-k8s objectives/rewrites -> llm-d.ai
    infergate migrate crds-check --to v1.5           # refuses (exit 6) while preview pools remain
    infergate migrate chart-values -f values.yaml    # inferencepool chart values v1.0 -> v1.5

    \b
    Exit codes: 0 ok / nothing to do; 1 error; 2 usage; 3 migration needed (check);
    4 paused (no data to judge: run again to resume); 5 a gate or check failed (run: the
    weights were rolled back); 6 refused (cleanup: still in use, or finalizers; --force; run,
    rollback: another run holds the namespace's Lease); 130 interrupted (run again to resume).
    """


@command.command("check")
@_cluster_options
@_namespace_options
@click.option("-f", "--filename", "files", multiple=True, type=click.Path(exists=True, allow_dash=True),
              help="Also scan manifest files or directories ('-' for stdin).")
@click.option("--no-cluster", is_flag=True, help="Scan only the files (-f).")
@click.option("--no-helm", is_flag=True, help="Do not scan Helm releases.")
@click.option("--strict", is_flag=True, help="Exit 3 for available (optional) moves too.")
@OUTPUT
def check(kubeconfig: str | None, context: str | None, helm_path: str | None, namespace: str | None,
          all_namespaces: bool, files: tuple[str, ...], no_cluster: bool, no_helm: bool, strict: bool,
          output: str) -> None:
    """Find uses of the preview API: both CRDs, x-k8s InferencePools and InferenceModels,
    HTTPRoutes sending traffic to x-k8s pools, v0.3.0 EPP Deployments, in the live cluster,
    in files (-f) and in Helm releases. Counts per resource and namespace, never by the
    ambiguous bare 'inferencepools'. All namespaces unless -n.

    \b
    Also the moves after GA, each reported separately ("Moves"):
      x-k8s-to-llm-d         x-k8s InferenceObjective/InferenceModelRewrite -> llm-d.ai
                             (pending when the llm-d.ai CRDs are installed: an EPP then
                             ignores the x-k8s objects; else available)
      target-models-rewrite  InferenceModel targetModels splits -> InferenceModelRewrite
                             (available)
      chart-values-v1.5      inferencepool releases with v1.0-style values (available)
    and the blocker crds-v1.5-blocked: preview InferencePools remain, so the CRDs must not
    be upgraded to GIE v1.5+ (see `migrate crds-check`, exit 6).

    Exit 0: nothing pending (available moves are listed); 3: a move is pending (--strict:
    or available); 1: error."""
    from infergate.migrate import census as c
    from infergate.migrate import generations as g
    from infergate.migrate.cluster import ClusterError, KubeCluster
    from infergate.migrate.output import emit, line, table

    scope = None if all_namespaces or not namespace else namespace
    parts = []
    extra: list[Any] = []
    errors: list[str] = []
    notes: list[str] = []
    cluster_scanned = False
    try:
        cluster = None
        if not no_cluster:
            try:
                cluster = KubeCluster.connect(_target(kubeconfig, context))
                click.get_current_context().call_on_close(cluster.close)  # else aiohttp complains at exit
            except ClusterError as exc:
                if not files:
                    raise
                # a CI job with manifests and no cluster (as `pluto detect-files`): the files alone
                notes.append(f"no cluster was scanned ({exc}); only the files (-f) were; --no-cluster says so "
                             "explicitly")
        if cluster is not None:
            parts.append(c.scan_cluster(cluster, scope))
            found, errs = g.scan_cluster_generations(cluster, scope, parts[-1])
            extra += found
            errors += errs
            cluster_scanned = True
            if scope is not None:
                notes.append(_scope_note(cluster, scope))
            if not no_helm:
                helm = _helm(helm_path, kubeconfig, context)
                if helm is None:
                    errors.append("helm not found: Helm releases not scanned (--helm PATH or --no-helm)")
                else:
                    found, errs = c.scan_helm(helm, scope)
                    extra += found
                    errors += errs
                    found, errs = g.scan_helm_values(helm, scope)
                    extra += found
                    errors += errs
        for path in files:
            extra += _scan_files(path)
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc
    if no_cluster:
        notes.append("no cluster was scanned (--no-cluster)")
    result = c.merge(*parts, extra=extra, errors=errors)
    moves = g.pending_moves(result)
    optional = g.optional_moves(result)
    blocking = [f.detail for f in result.findings if g.is_blocking(f)]
    if output != "table":
        emit({**result.to_dict(), "moves": [{"move": m, "count": n, "how": g.HOW[m],
                                              "status": "available" if m in optional else "pending"}
                                             for m, n in moves.items()],
              "blocking": blocking, "clusterScanned": cluster_scanned, "notes": notes}, output)
    else:
        if result.crds:
            table("CRDs", ["NAME", "INSTALLED", "VERSIONS", "SHORT NAMES", "BUNDLE"],
                  [(x.name, x.installed, ",".join(x.versions), ",".join(x.short_names), x.bundle_version)
                   for x in result.crds])
        table("Preview API use", ["SOURCE", "RESOURCE", "NAMESPACE", "KIND", "COUNT"], result.counts())
        if result.findings:
            table("Findings", ["SOURCE", "KIND", "NAMESPACE", "NAME", "DETAIL"],
                  [(f.source, f.kind, f.namespace, f.name, f.detail
                    + (f" finalizers={list(f.finalizers)}" if f.finalizers else "")) for f in result.findings])
        if result.ga_counts:
            table("GA objects", ["RESOURCE", "NAMESPACE", "COUNT"], result.ga_counts)
        if moves:
            table("Moves", ["MOVE", "STATUS", "FINDINGS", "HOW"],
                  [(m, "available" if m in optional else "pending", n, g.HOW[m]) for m, n in moves.items()])
        for reason in blocking:
            line(f"BLOCKING (crds-v1.5-blocked): {reason}; `infergate migrate crds-check --to v1.5` exits 6 "
                 "until they are gone")
        where = f" in namespace {scope}" if scope is not None and cluster_scanned else ""
        line(f"migration needed{where}" if result.migration_needed
             else f"no preview objects{where}: nothing to migrate" + ("" if cluster_scanned or not files
                                                                       else " in the files")
             + ("" if not optional else f"; optional moves available: {', '.join(sorted(optional))}"))
        for note in notes:
            line(f"note: {note}")
        for error in result.errors:
            click.echo(f"error: {error}", err=True)
    if result.errors and not result.findings:
        sys.exit(1)
    sys.exit(3 if result.migration_needed or (strict and optional) else 0)


def _preview_namespaces(cluster: Any) -> dict[str, int]:
    """Namespaces with preview InferencePools or InferenceModels, and how many (two cluster-wide lists)."""
    from infergate.migrate.cluster import ClusterError
    from infergate.migrate.resources import PREVIEW_MODELS, PREVIEW_POOLS, meta

    found: dict[str, int] = {}
    try:
        for resource in (PREVIEW_POOLS, PREVIEW_MODELS):
            for obj in cluster.list(resource, None):
                ns = str(meta(obj).get("namespace") or "")
                found[ns] = found.get(ns, 0) + 1
    except ClusterError:  # e.g. no cluster-wide list permission: say nothing about other namespaces
        return {}
    return found


def _scope_note(cluster: Any, scope: str) -> str:
    others = {ns: n for ns, n in _preview_namespaces(cluster).items() if ns != scope}
    text = f"looked only at namespace {scope} (-A for every namespace)"
    if others:
        text += "; preview InferencePools/InferenceModels also in " + ", ".join(
            f"{ns} ({n})" for ns, n in sorted(others.items()))
    return text


def _scan_files(path: str) -> list[Any]:
    from infergate.api.conversion import ManifestError, read_documents
    from infergate.cli.manifest_input import InputError, read_file, read_stdin, tolerant_output, valid_unicode
    from infergate.migrate.census import scan_objects
    from infergate.migrate.generations import scan_generation_objects

    tolerant_output()  # object names read from the files are echoed back

    sources: list[tuple[str, str]] = []
    try:
        if path == "-":
            sources.append(("<stdin>", read_stdin()))
        elif Path(path).is_dir():
            for file in sorted(Path(path).rglob("*")):
                if file.suffix in (".yaml", ".yml", ".json") and file.is_file():
                    sources.append((str(file), read_file(file)))
        else:
            sources.append((path, read_file(Path(path))))
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    findings = []
    for source, text in sources:
        try:
            docs = read_documents(text, source)
        except ManifestError as exc:
            raise click.ClickException(str(exc)) from exc
        objects: list[dict[str, Any]] = []
        for doc in docs:
            data = valid_unicode(doc.data)
            if isinstance(data, dict):
                kind = data.get("kind")
                items = data.get("items") if isinstance(kind, str) and kind.endswith("List") else None
                objects.extend(i for i in (items or [data]) if isinstance(i, dict))
        findings += scan_objects(objects, f"file:{source}")
        findings += scan_generation_objects(objects, f"file:{source}")
    return findings


def _make_plan(cluster: Any, namespace: str, kw: dict[str, Any]) -> Any:
    from infergate.migrate.discover import plan_from_cluster
    from infergate.migrate.plan import PlanError

    try:
        return plan_from_cluster(cluster, namespace, kw["route"], _plan_options_from(kw))
    except PlanError as exc:
        others = sorted(ns for ns in _preview_namespaces(cluster) if ns != namespace)
        hint = f" (preview objects exist in namespace {', '.join(others)}: -n NAMESPACE)" if others else ""
        raise click.ClickException(f"namespace {namespace}: {exc}{hint}") from exc


@command.command("plan")
@_cluster_options
@click.option("-n", "--namespace", help="Namespace of the HTTPRoute (default: the context's).")
@_plan_options
@click.option("--move", type=click.Choice(["preview-to-ga", "x-k8s-to-llm-d"]), default="preview-to-ga",
              show_default=True, help="Which move to plan: x-k8s-to-llm-d shows `migrate llm-d --plan`.")
@OUTPUT
def plan_command(kubeconfig: str | None, context: str | None, helm_path: str | None, namespace: str | None,
                 output: str, move: str, **kw: Any) -> None:
    """Show the concrete steps of the migration of one HTTPRoute: the GA pool names, the
    InferenceObjectives and routes the converter creates from the InferenceModels, the weight
    steps and gates, the teardown order, and every lossy field. Changes nothing.
    --move x-k8s-to-llm-d: the steps of `infergate migrate llm-d` instead."""
    from infergate.migrate.helm import OCI_CHART
    from infergate.migrate.output import emit, line, table

    if move == "x-k8s-to-llm-d":
        click.get_current_context().invoke(llmd_command, kubeconfig=kubeconfig, context=context,
                                           namespace=namespace, plan_only=True, output=output)
        return

    cluster = _connect(kubeconfig, context)
    ns = namespace or _default_namespace(kubeconfig, context)
    existing = _existing_state(cluster, ns, kw["route"])
    if existing is not None and not existing.completed:
        existing = None  # nothing done yet: the plan follows the current options
    plan = existing.plan if existing is not None else _make_plan(cluster, ns, kw)
    if output != "table":
        emit(plan.to_dict(), output)
        return
    if existing is not None:
        line(f"a migration of this route is in progress (phase {existing.phase}); its recorded plan:")
    table(f"Plan: {plan.path} migration of HTTPRoute {plan.namespace}/{plan.route}", ["POOL (preview)", "GA POOL",
          "SELECTOR", "INSTALL", "GA EPP"],
          [(p.preview, p.ga, ",".join(f"{k}={v}" for k, v in p.selector),
            p.chart.command() if p.chart else "objects", p.ga_epp) for p in plan.pools])
    created = [(o["kind"], o["metadata"]["name"], _objective_detail(o)) for o in plan.objectives]
    for p in plan.pools:
        if p.install == "objects":
            created.append((p.ga_object.get("kind", "InferencePool"), p.ga, f"GA pool of {p.preview}"))
            created += [(o.get("kind", ""), (o.get("metadata") or {}).get("name", ""), f"GA EPP of {p.ga}")
                        for o in p.ga_epp_objects]
    if created:
        table("Objects to create", ["KIND", "NAME", "DETAIL"], created)
    table("Steps", ["#", "STEP", "WHAT", "MANUAL EQUIVALENT"],
          [(i + 1, s.id, s.description, s.manual) for i, s in enumerate(plan.steps)])
    if plan.path == "zero-downtime":
        from infergate.migrate.gates import slow_probes_allowed

        g = plan.gates
        line(f"weights (GA %): {' -> '.join(str(w) for w in plan.weights)}; gates: success rate >= "
             f"{g.min_success_rate}, p99 TTFT <= baseline x {g.p99_ttft_factor} + {g.p99_ttft_slack_s * 1000:.0f} ms "
             f"(at most {slow_probes_allowed(g.probes)} of {g.probes} probes over it), "
             f"per-pool share within max({g.attribution_floor}, 3 sigma), model allow-list divergence, "
             f"{g.probes} probes per window, no traffic = paused; `run` bakes each step --step-duration (default "
             f"2m: a window every 10 s, then the EPPs' real traffic), --fast: one window")
    if plan.lossy:
        table("Lossy or changed fields", ["OBJECT", "FIELD", "WHAT HAPPENS"],
              [(w.object, w.field, w.message) for w in plan.lossy])
    for note in plan.notes:
        line(f"note: {note}")
    if existing is None:
        line(f"`{_run_command_line(ns)}` does exactly these steps (the same flags make the same plan)")
        if any(p.chart is not None and p.chart.chart == OCI_CHART for p in plan.pools):
            line(f"the chart is pulled from {OCI_CHART} at run time; without access to that registry use a local "
                 "copy: --chart charts/inferencepool --chart-version ''")


def _run_command_line(namespace: str) -> str:
    """The `infergate migrate run` command with the plan-shaping flags given to this command."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    parts = ["infergate migrate run", "-n", shlex.quote(namespace)]
    for param in ctx.command.params:
        name = param.name or ""
        if name in ("namespace", "output", "kubeconfig", "helm_path", "move") or not isinstance(param, click.Option):
            continue
        if ctx.get_parameter_source(name) in (None, ParameterSource.DEFAULT):
            continue
        flag = max(param.opts, key=len)
        value = ctx.params[name]
        if param.is_flag:
            if value:
                parts.append(flag)
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _objective_detail(obj: dict[str, Any]) -> str:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "InferenceObjective":
        return f"priority {spec.get('priority')}, poolRef {(spec.get('poolRef') or {}).get('name')}"
    return "weighted targetModels"


def _existing_state(cluster: Any, namespace: str, route: str | None) -> Any:
    from infergate.migrate.resources import CONFIGMAPS
    from infergate.migrate.state import STATE_LABEL, STATE_LABEL_VALUE, MigrationState

    maps = [cm for cm in cluster.list(CONFIGMAPS, namespace)
            if (cm.get("metadata", {}).get("labels") or {}).get(STATE_LABEL) == STATE_LABEL_VALUE
            and cm["metadata"]["name"].startswith("infergate-migration-")]
    if route is not None:
        maps = [cm for cm in maps if cm["metadata"]["name"] == f"infergate-migration-{route}"]
    if len(maps) != 1:
        return None
    return MigrationState.from_configmap(maps[0])


def _parse_epp_metrics(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        pool, sep, url = value.partition("=")
        if not sep or not url:
            raise click.BadParameter(f"{value!r}: expected POOL=URL", param_hint="--epp-metrics")
        out[pool] = url
    return out


@command.command("run")
@_cluster_options
@click.option("-n", "--namespace", help="Namespace of the HTTPRoute (default: the context's).")
@_plan_options
@click.option("--dry-run", is_flag=True, help="Send every change with dryRun=All; record nothing.")
@click.option("--gateway-url", help="Where probes go (default: the Gateway's status address and listener port).")
@click.option("--epp-metrics", multiple=True, help="POOL=URL of a pool's EPP /metrics (default: its Service).")
@click.option("--probe-model", multiple=True, help="Also probe this model (e.g. one without an InferenceModel).")
@click.option("--analysis-delay", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Extra seconds to wait after a weight change, once the gateway demonstrably serves the new "
              "weights (its route status current and probes split as the weights say; that wait is bounded by "
              "--ready-timeout), before the measured window.")
@click.option("--ready-timeout", type=click.FloatRange(min=0.0, min_open=True), default=120.0, show_default=True,
              help="Seconds to wait for the GA EPPs to be ready, for the statuses, and after each weight change "
              "for the gateway to serve the new weights (then the step fails).")
@click.option("--step-duration", default="2m", show_default=True,
              help="Bake time of each weight step: probe windows every 10 s and the real traffic the EPPs count, "
              "for this long (a Go duration such as 90s or 5m; a bare number is minutes).")
@click.option("--min-requests", type=click.IntRange(min=0), default=100, show_default=True,
              help="Real requests (not probes) a step must see to be judged on real traffic; fewer: on probes.")
@click.option("--prometheus-url", help="Read the EPPs' request and error counters from this Prometheus "
              "(/api/v1/query) instead of their /metrics.")
@click.option("--fast", is_flag=True, help="One short probe window per step, no bake time (demos, tests).")
@click.option("--force", is_flag=True, help="Proceed despite a GitOps owner / kept CRDs in use.")
@click.option("--retry", is_flag=True, help="Start again after a rollback.")
@click.option("--stop-after", metavar="STEP", help="Stop after this step id (staged runs); run again to go on.")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the live dashboard of this run, on 127.0.0.1 (0: any free port). See docs/dashboard.md.")
@click.option("--no-dashboard", is_flag=True, help="Do not serve the live dashboard.")
@OUTPUT
def run_command(kubeconfig: str | None, context: str | None, helm_path: str | None, namespace: str | None,
                output: str, dry_run: bool, gateway_url: str | None, epp_metrics: tuple[str, ...],
                probe_model: tuple[str, ...], analysis_delay: float, ready_timeout: float, step_duration: str,
                min_requests: int, prometheus_url: str | None, fast: bool, force: bool,
                retry: bool, stop_after: str | None, dashboard_port: int, no_dashboard: bool, **kw: Any) -> None:
    """Run (or resume) the migration of one HTTPRoute as a state machine recorded in the
    ConfigMap infergate-migration-<route>. A finished migration is a no-op; an interrupted one
    resumes where it stopped; a failed gate rolls the weights back and stops with a report."""
    from infergate.migrate.bake import BakeOptions
    from infergate.migrate.output import emit, line, table
    from infergate.migrate.runner import Migrator, RunOptions

    cluster = _connect(kubeconfig, context)
    ns = namespace or _default_namespace(kubeconfig, context)
    options = RunOptions(dry_run=dry_run, force=force, retry=retry, gateway_url=gateway_url,
                         epp_metrics=_parse_epp_metrics(epp_metrics), probe_models=probe_model,
                         analysis_delay_s=analysis_delay, ready_timeout_s=ready_timeout, stop_after=stop_after,
                         bake=BakeOptions(duration_s=_step_duration(step_duration), min_requests=min_requests,
                                          prometheus_url=prometheus_url, fast=fast))
    existing = _existing_state(cluster, ns, kw["route"])
    if existing is not None and existing.completed and existing.plan.path != kw["path"]:
        raise click.ClickException(f"a {existing.plan.path} migration of HTTPRoute {existing.plan.route} is recorded; "
                                   f"it cannot continue as --path {kw['path']}")
    progress = _progress(output)
    from infergate.dashboard.migrate import MigrationDashboard

    route = kw["route"] or (existing.plan.route if existing else None)
    watch = MigrationDashboard(None if no_dashboard else dashboard_port, kubeconfig, context, ns, route,
                               terminal=output == "table")
    migrator = Migrator(cluster, _helm(helm_path, kubeconfig, context), options, progress=progress, events=watch.events)
    plan: Any = existing.plan if existing is not None and existing.completed else (lambda: _make_plan(cluster, ns, kw))
    try:  # Ctrl-C and SIGTERM cancel the run, which records where it stopped (bounded: STOP_GRACE_S)
        result = run_until_stopped(watch.around(migrator.run(plan, namespace=ns, route=route)),
                                   grace=STOP_GRACE_S, on_signal=_say_stopping)
    except (Stopped, asyncio.CancelledError) as stop:
        if isinstance(stop, Stopped) and not stop.finished:
            click.echo(f"the run did not finish stopping within {STOP_GRACE_S:.0f} s: abandoned", err=True)
        _report_interrupted(cluster, ns, route, dry_run)
        sys.exit(130)
    if output != "table":
        emit(result.to_dict(), output)
    else:
        if result.steps:
            table("Migration", ["STEP", "STATUS", "DETAIL", "SECONDS"],
                  [(s["step"], s["status"], s.get("detail", ""), s.get("seconds", "")) for s in result.steps])
        if result.gates:
            table("Last analysis", ["WEIGHT", "GATE", "VERDICT", "DETAIL"],
                  [(g["weight"], g["gate"], g["verdict"], g["detail"]) for g in result.gates])
        if result.downtime is not None:
            line(f"measured downtime: {result.downtime['downtimeS']} s ({result.downtime['failed']} of "
                 f"{result.downtime['requests']} monitor requests failed)")
        line(f"{result.phase}: {result.message}")
    sys.exit(result.exit_code)


def _step_duration(text: str) -> float:
    """``--step-duration``: a Go duration, or a bare number of minutes."""
    from infergate.util.durations import DurationError, parse_go_duration

    try:
        seconds = float(text) * 60 if text.strip().replace(".", "", 1).isdigit() else parse_go_duration(text)
    except (DurationError, ValueError):
        raise click.BadParameter(f"{text!r}: a duration such as 90s, 2m or 1m30s (a bare number is minutes)",
                                 param_hint="--step-duration") from None
    if seconds < 0:
        raise click.BadParameter(f"{text!r}: must not be negative", param_hint="--step-duration")
    return seconds


def _say_stopping(sig: signal.Signals) -> None:
    click.echo(f"received {sig.name}: stopping the run and recording where it stopped", err=True)


def _report_interrupted(cluster: Any, namespace: str, route: str | None, dry_run: bool) -> None:
    state = None if dry_run else _existing_state(cluster, namespace, route)
    if state is None and not dry_run:
        click.echo("interrupted before the migration started: nothing was recorded", err=True)
        return
    during = state.interrupted_during if state is not None else None
    recorded = "the state is recorded (phase interrupted"
    if state is not None and during is None:  # the run did not record its interruption: say so, and where
        during = next((s.id for s in state.plan.steps if not state.done(s.id)), None)
        recorded = f"the interruption was not recorded (the state says phase {state.phase}; the steps done are"
    where = f"during {during}" if during else ""
    route_name = state.plan.route if state is not None else route
    flags = f"-n {namespace}" + (f" --route {route_name}" if route_name else "")
    click.echo(f"interrupted {where}".rstrip() + (": nothing was recorded (dry run)" if dry_run else
               f": {recorded}; see `infergate migrate status {flags}`). The "
               f"HTTPRoute keeps the weights it had. Resume with the same `infergate migrate run {flags}` "
               f"command, or restore the preview backends with `infergate migrate rollback {flags}`"),
               err=True)


def _progress(output: str) -> Callable[[str], None]:
    """Progress lines on stderr (rich), one per step and gate, with the time."""
    if output != "table":
        return lambda _: None
    from rich.markup import escape

    from infergate.migrate.output import console_for

    console = console_for(sys.stderr, stderr=True)

    def show(text: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(text)}", highlight=False)

    return show


@command.command("rollback")
@_cluster_options
@click.option("-n", "--namespace")
@click.option("--route", required=True)
@click.option("--force", is_flag=True, help="Roll back even after the lock.")
@click.option("--dry-run", is_flag=True)
def rollback_command(kubeconfig: str | None, context: str | None, helm_path: str | None, namespace: str | None,
                     route: str, force: bool, dry_run: bool) -> None:
    """Restore the HTTPRoute's original (preview) backends; refused after the lock unless --force."""
    from infergate.migrate.runner import Migrator, RunOptions

    cluster = _connect(kubeconfig, context)
    ns = namespace or _default_namespace(kubeconfig, context)
    result = asyncio.run(Migrator(cluster, None, RunOptions(force=force, dry_run=dry_run)).rollback(ns, route))
    click.echo(f"{result.phase}: {result.message}")
    sys.exit(result.exit_code)


@command.command("status")
@_cluster_options
@click.option("-n", "--namespace")
@click.option("--route")
@OUTPUT
def status_command(kubeconfig: str | None, context: str | None, helm_path: str | None, namespace: str | None,
                   route: str | None, output: str) -> None:
    """Show the recorded state of a migration (phase, completed steps, last report)."""
    from infergate.migrate.output import emit, line, table

    cluster = _connect(kubeconfig, context)
    ns = namespace or _default_namespace(kubeconfig, context)
    state = _existing_state(cluster, ns, route)
    if state is None:
        raise click.ClickException(f"no (single) migration recorded in namespace {ns}" + ("" if route else
                                   ": pass --route"))
    data = {"route": state.plan.route, "path": state.plan.path, "phase": state.phase,
            "gaWeight": state.ga_weight, "locked": state.locked, "completed": list(state.completed),
            "history": list(state.history), "report": state.report,
            "interruptedDuring": state.interrupted_during, "lock": _lock_holder(cluster, ns)}
    if output != "table":
        emit(data, output)
        return
    line(f"HTTPRoute {ns}/{state.plan.route}: {state.plan.path}, phase {state.phase}, GA weight "
         f"{state.ga_weight}, locked {state.locked}")
    flags = f"-n {ns} --route {state.plan.route}"
    if state.phase == "interrupted":
        line(f"interrupted during {state.interrupted_during or 'a step'}: resume with `infergate migrate run "
             f"{flags}` (the same flags as before), or `infergate migrate rollback {flags}`")
    holder = data["lock"]
    if holder:
        line(f"a run is in progress: {holder}")
    elif state.phase == "running":
        line(f"no run holds the migration Lease: the last run was killed before it could record it; resume with "
             f"`infergate migrate run {flags}`")
    table("History", ["AT", "STEP / PHASE", "DETAIL"],
          [(h.get("at"), h.get("step") or h.get("phase"), h.get("detail") or h.get("reason") or "")
           for h in state.history])


def _lock_holder(cluster: Any, namespace: str) -> str | None:
    """Who holds the namespace's migration Lease now (None: nobody, or it expired)."""
    from infergate.kube.kinds import LEASES
    from infergate.migrate.lock import LEASE_NAME, LeaseView

    lease = cluster.get(LEASES, namespace, LEASE_NAME)
    if lease is None:
        return None
    view = LeaseView.of(lease)
    left = view.expires_in(time.time())
    return f"Lease {namespace}/{LEASE_NAME} held by {view.holder} (expires in {left:.0f} s)" \
        if view.holder and left > 0 else None


@command.command("verify")
@_cluster_options
@click.option("-n", "--namespace")
@click.option("--route", required=True, multiple=True, help="HTTPRoute(s) to verify.")
@click.option("--requests", "count", type=click.IntRange(min=0), default=20, show_default=True,
              help="Probe requests to /v1/completions (0: status checks only).")
@click.option("--model", "models", multiple=True, help="Model(s) to request (default: the objectives' names "
              "are not models; give at least one for the request check).")
@click.option("--gateway-url", help="Default: the Gateway's status address and listener port.")
@click.option("--epp-metrics", multiple=True, help="POOL=URL of a pool's EPP /metrics (default: its Service).")
@OUTPUT
def verify_command(kubeconfig: str | None, context: str | None, helm_path: str | None, namespace: str | None,
                   route: tuple[str, ...], count: int, models: tuple[str, ...], gateway_url: str | None,
                   epp_metrics: tuple[str, ...], output: str) -> None:
    """Gateway Programmed=True, HTTPRoute Accepted and ResolvedRefs for every parent, each
    InferencePool's parent status Accepted, and N requests answered 200 by each pool in the
    share its weight gives. Exit 0: all pass; 5: a check failed."""
    from infergate.migrate import verify as v
    from infergate.migrate.output import emit, line, table
    from infergate.migrate.resources import GA_POOLS, HTTPROUTES, PREVIEW_POOLS

    cluster = _connect(kubeconfig, context)
    ns = namespace or _default_namespace(kubeconfig, context)
    checks = v.status_checks(cluster, ns, list(route))
    first = cluster.get(HTTPROUTES, ns, route[0])
    url = gateway_url or (v.gateway_url(cluster, ns, first) if first else None)
    urls = _parse_epp_metrics(epp_metrics)
    if count > 0:
        if not models:
            raise click.UsageError("--model is required for the request check (or --requests 0)")
        if url is None:
            checks.append(v.Check("requests", False, "no gateway address (--gateway-url)"))
        else:
            shares: dict[str, float] = {}
            weights: dict[str, float] = {}
            for name in route:
                obj = cluster.get(HTTPROUTES, ns, name) or {}
                for rule in (obj.get("spec") or {}).get("rules") or []:
                    for ref in rule.get("backendRefs") or []:
                        if ref.get("kind") == "InferencePool":
                            weights[ref["name"]] = weights.get(ref["name"], 0) + float(ref.get("weight", 1))
                            if ref["name"] not in urls:
                                res = PREVIEW_POOLS if ref.get("group") == PREVIEW_POOLS.group else GA_POOLS
                                pool = cluster.get(res, ns, ref["name"])
                                svc = v.pool_epp_service(pool) if pool else None
                                found = v.epp_metrics_url(cluster, ns, svc) if svc else None
                                if found:
                                    urls[ref["name"]] = found
            total = sum(weights.values())
            shares = {k: w / total for k, w in weights.items()} if total else {}
            if set(shares) - set(urls):
                urls = {}
            checks += asyncio.run(v.traffic_checks(url, list(models), count, urls, shares))
    ok = all(c.ok for c in checks)
    if output != "table":
        emit({"ok": ok, "checks": [c.to_dict() for c in checks]}, output)
    else:
        table("Verify", ["CHECK", "OK", "DETAIL"], [(c.name, "yes" if c.ok else "NO", c.detail) for c in checks])
        line("verified" if ok else "verification FAILED")
    sys.exit(0 if ok else 5)


@command.command("cleanup")
@_cluster_options
@_namespace_options
@click.option("--force", is_flag=True, help="Delete even while other namespaces or routes use the preview API, "
              "or objects are held by finalizers.")
@click.option("--dry-run", is_flag=True, help="Send every deletion with dryRun=All.")
@OUTPUT
def cleanup_command(kubeconfig: str | None, context: str | None, helm_path: str | None, namespace: str | None,
                    all_namespaces: bool, force: bool, dry_run: bool, output: str) -> None:
    """Remove the preview API in a safe order: a cluster-wide census first (refused while a
    namespace outside -n still has preview objects, or a route still uses a preview pool,
    unless --force), Helm releases before the CRDs they need, preview objects (finalizers
    reported), then the preview CRDs (the v0.3.0 bundle, config/crd/preview.yaml).
    Exit 0: done; 6: refused."""
    from infergate.migrate.cleanup import cleanup
    from infergate.migrate.output import emit, line, table

    cluster = _connect(kubeconfig, context)
    ns = None if all_namespaces else (namespace or _default_namespace(kubeconfig, context))
    result = cleanup(cluster, _helm(helm_path, kubeconfig, context), ns, force=force, dry_run=dry_run)
    if output != "table":
        emit(result.to_dict(), output)
    else:
        for reason in result.refused:
            line(f"refused: {reason}")
        if result.actions:
            table("Cleanup", ["ACTION"], [(a,) for a in result.actions])
        for f in result.finalizers:
            line(f"finalizer: {f}")
        line(result.message)
    sys.exit(result.exit_code)


@command.command("chart-values")
@click.option("-f", "--values", "values_file", required=True, type=click.Path(exists=True, dir_okay=False,
              allow_dash=True), help="A values file of the inferencepool chart in the v1.0 layout ('-' for stdin).")
@click.option("--output-file", type=click.Path(dir_okay=False), help="Write the v1.5 values here (default: stdout).")
@click.option("--unset-failure-mode", type=click.Choice(["FailClose", "FailOpen"]), default="FailClose",
              show_default=True, help="What an unset inferenceExtension.failureMode meant for this release: its "
              "chart's default. FailClose for upstream's v1.0 chart (written out, since v1.5 defaults to "
              "FailOpen); FailOpen for infergate's charts/inferencepool and upstream's charts since v1.4 (left "
              "unset).")
def chart_values_command(values_file: str, output_file: str | None, unset_failure_mode: str) -> None:
    """Convert inferencepool chart values from the v1.0 layout to the v1.5 one (image.registry/
    repository, flags as a map, failureMode kept (see --unset-failure-mode), leader election from replicas,
    provider.gke/istio, inferencePool.targetPorts). Notes on what changes behaviour go to stderr.
    Exit 0: converted (or already v1.5); 1: values that cannot be converted (each problem with its
    field path)."""
    import yaml

    from infergate.api import yamlload
    from infergate.cli.manifest_input import InputError, read_file, read_stdin
    from infergate.migrate.chart_values import ChartValuesError, convert_values

    try:
        text = read_stdin() if values_file == "-" else read_file(Path(values_file))
        values = yamlload.load(text) or {}
    except InputError as exc:  # its text names the file
        raise click.ClickException(str(exc)) from None
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{values_file}: invalid YAML: {yamlload.one_line(exc)}") from None
    try:
        result = convert_values(values, unset_failure_mode=unset_failure_mode)
    except ChartValuesError as exc:
        raise click.ClickException(f"{values_file}: " + "\n  ".join(["cannot convert:", *exc.problems])) from None
    rendered = yaml.safe_dump(result.values, sort_keys=False, default_flow_style=False)
    if output_file:
        try:
            Path(output_file).write_text(rendered)
        except OSError as exc:
            raise click.ClickException(f"--output-file {output_file}: {exc.strerror or exc}") from None
    else:
        click.echo(rendered, nl=False)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


@command.command("crds-check")
@_cluster_options
@click.option("--to", "target", type=click.Choice(["v1.0", "v1.5", "v1.6", "current"]), default="current",
              show_default=True, help="The GIE release whose CRDs are about to be installed (current: v1.6 + "
              "llm-d, as `infergate crds --bundle current`).")
def crds_check_command(kubeconfig: str | None, context: str | None, helm_path: str | None, target: str) -> None:
    """Pre-check a CRD upgrade: GIE v1.5 removed the preview InferencePool CRD
    (inference.networking.x-k8s.io), so installing v1.5+ CRDs while preview InferencePools
    remain deletes them (and the traffic they serve). Run it before `kubectl apply` of new CRDs.
    Exit 0: safe; 6: refused, the remaining preview InferencePools are named; 1: error."""
    from infergate.migrate.cluster import ClusterError
    from infergate.migrate.exitcodes import EXIT_REFUSED
    from infergate.migrate.generations import crd_upgrade_blockers

    cluster = _connect(kubeconfig, context)
    try:
        blockers = crd_upgrade_blockers(cluster, target)
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc
    if blockers:
        click.echo(f"refused: the GIE {target} CRDs no longer serve inferencepools.inference.networking.x-k8s.io, "
                   f"and {len(blockers)} preview InferencePool(s) remain: {', '.join(blockers)}. Migrate them to GA "
                   "first (`infergate migrate run -n NS`, then `infergate migrate cleanup`)", err=True)
        sys.exit(EXIT_REFUSED)
    click.echo(f"ok: no preview InferencePool blocks the GIE {target} CRDs")


@command.command("llm-d")
@_cluster_options
@click.option("-n", "--namespace", help="Namespace of the objects (default: the context's).")
@click.option("--plan", "plan_only", is_flag=True, help="Show the steps and the objects to move; change nothing.")
@click.option("--dry-run", is_flag=True, help="Send every write with dryRun=All.")
@click.option("--rollback", "do_rollback", is_flag=True,
              help="Undo: restore deleted x-k8s objects from their copies, then delete the copies.")
@click.option("--gateway-url", help="Gateway base URL for the EPP probe (with --epp-metrics and --probe-model).")
@click.option("--epp-metrics", "metrics_urls", multiple=True, help="URL of an EPP's /metrics (repeat per EPP).")
@click.option("--probe-model", help="Model the probe requests name.")
@click.option("--probes", type=click.IntRange(min=0), default=3, show_default=True, help="Probe requests per InferenceObjective.")
@click.option("--install-crds", is_flag=True,
              help="Install infergate's llm-d.ai CRDs (as `infergate crds --bundle llm-d`) when missing, right "
                   "before the copies: an EPP reads only llm-d.ai from the moment they exist, so this keeps the "
                   "time it applies no rewrite and no objective to the copies' milliseconds. A failed "
                   "verification removes them again.")
@click.option("--switch-grace", default="5s", show_default=True,
              help="Without the EPP probe: how old the llm-d.ai CRDs must be before the x-k8s objects are deleted "
                   "(an EPP notices new CRDs by polling; deleted before it reads llm-d.ai, they take its rewrites "
                   "and objectives with them). A Go duration or seconds.")
@click.option("--probe-settle", default="10s", show_default=True,
              help="How long to probe an objective again while the EPP's watch has not delivered its copy yet "
                   "(a Go duration or seconds).")
@OUTPUT
def llmd_command(kubeconfig: str | None, context: str | None, helm_path: str | None, namespace: str | None,
                 plan_only: bool, dry_run: bool, do_rollback: bool, gateway_url: str | None,
                 metrics_urls: tuple[str, ...], probe_model: str | None, probes: int, install_crds: bool,
                 switch_grace: str, probe_settle: str, output: str) -> None:
    """Move InferenceObjectives and InferenceModelRewrites from inference.networking.x-k8s.io
    (GIE v1.0-v1.5) to llm-d.ai (the llm-d router) without downtime: copy each to llm-d.ai (both
    served; the EPP prefers llm-d.ai), verify the copies (and, with --gateway-url, --epp-metrics
    and --probe-model, that the EPP reads llm-d.ai and admits each objective with its priority;
    without them, wait until the llm-d.ai CRDs are --switch-grace old), then delete the x-k8s
    objects. A failed verification deletes the copies again. --install-crds (recommended)
    installs the llm-d.ai CRDs right before the copies: an EPP reads only llm-d.ai once they
    exist, so installed earlier they leave it without rewrites and objectives until the copies.

    \b
    infergate migrate llm-d -n prod --install-crds --plan     # the steps
    infergate migrate llm-d -n prod --install-crds --dry-run  # every write with dryRun=All
    infergate migrate llm-d -n prod --install-crds            # (CRDs,) copy, verify, delete the old
    infergate migrate llm-d -n prod --rollback                # restore the x-k8s objects, delete the copies

    Exit 0: done (or nothing to do); 1: error (e.g. the llm-d.ai CRDs are not installed);
    5: a verification failed, the copies were deleted; 6: refused (an llm-d.ai object of the
    same name has another spec)."""
    from infergate.migrate import llmd
    from infergate.migrate.cluster import ClusterError
    from infergate.migrate.output import emit, line, table

    probe_args = (gateway_url, metrics_urls, probe_model)
    if any(probe_args) and not all(probe_args):
        raise click.UsageError("the EPP probe needs --gateway-url, --epp-metrics and --probe-model together")
    from infergate.util.durations import DurationError, parse_seconds

    durations: dict[str, float] = {}
    for hint, text in (("--probe-settle", probe_settle), ("--switch-grace", switch_grace)):
        try:
            durations[hint] = parse_seconds(text)
        except DurationError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from exc
        if durations[hint] < 0:
            raise click.BadParameter("must not be negative", param_hint=hint)
    settle_s = durations["--probe-settle"]
    cluster = _connect(kubeconfig, context)
    ns = namespace or _default_namespace(kubeconfig, context)
    try:
        if do_rollback:
            result = llmd.rollback(cluster, ns, dry_run=dry_run)
        else:
            plan = llmd.plan_llmd(cluster, ns, install_crds=install_crds)
            if plan_only:
                if output != "table":
                    emit(plan.to_dict(), output)
                else:
                    table(f"Plan: x-k8s -> llm-d.ai in namespace {ns}", ["#", "STEP", "WHAT"],
                          [(i + 1, s, d) for i, (s, d) in enumerate(plan.steps())])
                    for name in plan.already_copied:
                        line(f"note: {name} already has its llm-d.ai copy (the run re-applies it)")
                return
            verifier = None
            if gateway_url and probe_model:
                from infergate.migrate.llmd_probe import objective_probe

                verifier = objective_probe(gateway_url, list(metrics_urls), probe_model, probes=probes,
                                           settle_s=settle_s)
            result = llmd.run(cluster, plan, dry_run=dry_run, verify_epp=verifier,
                              switch_grace_s=durations["--switch-grace"], progress=_progress(output))
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc
    if output != "table":
        emit(result.to_dict(), output)
    else:
        if result.steps:
            table("x-k8s -> llm-d.ai", ["STEP", "STATUS", "DETAIL"],
                  [(s["step"], s["status"], s["detail"]) for s in result.steps])
        line(f"{result.phase}: {result.message}")
    sys.exit(result.exit_code)
