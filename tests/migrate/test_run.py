"""`infergate migrate run` / `rollback` / `status`: the state machine on the embedded API
server. A status writer stands in for the gateway controller and pod runtime (these tests are
about the migration's decisions; test_e2e.py runs the real gateway, EPPs and simulators)."""

from __future__ import annotations

import contextlib
import copy
import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from infergate.kube.errors import Conflict
from infergate.migrate.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    GA_POOLS,
    HTTPROUTES,
    OBJECTIVES,
    PREVIEW_MODELS,
    PREVIEW_POOLS,
)
from infergate.migrate.runner import RESTORE_CONFLICT_ATTEMPTS, Migrator, RunOptions
from infergate.util.wait import WaitTimeout, wait_until

TESTDATA = Path(__file__).resolve().parent / "testdata"
PREVIEW, GA = "vllm-llama3-8b-instruct-preview", "vllm-llama3-8b-instruct-ga"
X, K8S = "inference.networking.x-k8s.io", "inference.networking.k8s.io"
T = TypeVar("T")


def run(migrate: Any, ns: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = migrate("run", "-n", ns, "-o", "json", "--ready-timeout", "3", "--analysis-delay", "0", *args)
    return result.returncode, json.loads(result.stdout)


def backend_refs(cluster: Any, ns: str) -> list[tuple[str, str, int]]:
    route = cluster.get(HTTPROUTES, ns, "llm-route")
    return [(r["group"], r["name"], r.get("weight", 1)) for rule in route["spec"]["rules"] for r in rule["backendRefs"]]


def test_simple_path_replaces_the_preview_stack_and_a_second_run_does_nothing(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    code, report = run(migrate, ns, "--path", "simple", "--probes", "0")
    assert code == 0, report
    assert report["phase"] == "done"
    # the GA stack first, ready, then the preview stack goes and the route moves (issue 17 defect 8)
    assert [s["step"] for s in report["steps"]] == [
        "preflight", "install-ga-crds", f"install-pool-{GA}", "apply-objectives", "wait-ready", "remove-preview",
        "final-route", "delete-preview-crds", "verify"]
    assert cluster.get(PREVIEW_POOLS, ns, PREVIEW) is None
    assert cluster.list(PREVIEW_MODELS, ns) == []
    assert cluster.get(DEPLOYMENTS, ns, f"{PREVIEW}-epp") is None
    pool = cluster.get(GA_POOLS, ns, GA)
    # migration.md §9 case 3: the preview pool had no extensionRef.portNumber -> 9002, never the model port
    assert pool["spec"]["endpointPickerRef"] == {"name": f"{GA}-epp", "port": {"number": 9002}, "group": "",
                                                 "kind": "Service", "failureMode": "FailClose"}
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["selector"] == {"matchLabels": {"app": "vllm-llama3-8b-instruct"}}
    epp_args = cluster.get(DEPLOYMENTS, ns, f"{GA}-epp")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert epp_args[epp_args.index("--pool-name") + 1] == GA
    assert epp_args[epp_args.index("--pool-group") + 1] == K8S
    priorities = {o["metadata"]["name"]: o["spec"]["priority"] for o in cluster.list(OBJECTIVES, ns)}
    assert priorities == {"food-review": 1, "base-model": 2}
    assert {(g, n) for g, n, _ in backend_refs(cluster, ns)} == {(K8S, GA)}
    before = cluster.get(CONFIGMAPS, ns, "infergate-migration-llm-route")["metadata"]["resourceVersion"]

    code, again = run(migrate, ns, "--path", "simple", "--probes", "0")
    assert code == 0 and again["phase"] == "done" and "nothing to do" in again["message"]
    assert cluster.get(CONFIGMAPS, ns, "infergate-migration-llm-route")["metadata"]["resourceVersion"] == before


def test_no_traffic_pauses_instead_of_passing_and_rollback_restores_the_route(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    original = cluster.get(HTTPROUTES, ns, "llm-route")["spec"]
    code, report = run(migrate, ns, "--probes", "0", "--gateway-url", "http://127.0.0.1:9")
    assert code == 4, report
    assert report["phase"] == "paused"
    assert report["steps"][-1]["step"] == "analyse-0" and report["steps"][-1]["status"] == "paused"
    assert any(g["gate"] == "traffic" and g["verdict"] == "paused" for g in report["gates"])
    # the GA backend is in the route at weight 0, keyed by group: preview keeps 100
    # (one pair per converted rule: per model + the catch-all)
    refs = backend_refs(cluster, ns)
    assert set(refs) == {(K8S, GA, 0), (X, PREVIEW, 100)} and len(refs) == 6, refs
    status = migrate("status", "-n", ns, "-o", "json")
    assert json.loads(status.stdout)["phase"] == "paused"

    rolled = migrate("rollback", "-n", ns, "--route", "llm-route")
    assert rolled.returncode == 0, rolled.out
    assert cluster.get(HTTPROUTES, ns, "llm-route")["spec"] == original
    assert cluster.get(PREVIEW_POOLS, ns, PREVIEW) is not None  # nothing of the preview stack was touched
    code, report = run(migrate, ns, "--probes", "0")
    assert code == 5 and "--retry" in report["message"]


def test_an_interrupted_run_resumes_where_it_stopped(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    code, first = run(migrate, ns, "--probes", "0", "--stop-after", f"install-pool-{GA}")
    assert code == 0, first
    assert [s["step"] for s in first["steps"]] == ["preflight", "install-ga-crds", f"install-pool-{GA}"]
    assert cluster.get(GA_POOLS, ns, GA) is not None
    assert cluster.list(OBJECTIVES, ns) == []
    assert cluster.get(GA_POOLS, ns, GA)["metadata"]["generation"] == 1

    code, second = run(migrate, ns, "--probes", "0")
    assert code == 4, second  # resumed, then paused at the first analysis (no traffic)
    statuses = {s["step"]: s["status"] for s in second["steps"]}
    assert statuses["preflight"] == statuses[f"install-pool-{GA}"] == "done earlier"
    assert statuses["apply-objectives"] == "done"
    assert cluster.get(GA_POOLS, ns, GA)["metadata"]["generation"] == 1  # not installed again


def test_a_stop_after_that_names_no_step_is_refused_before_anything_is_done(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any) -> None:
    """Before: a misspelled --stop-after never matched, and the staged run went on to the end."""
    ns = preview_stack
    code, report = run(migrate, ns, "--probes", "0", "--stop-after", "install-pol")
    assert code == 1 and report["phase"] == "refused", report
    assert report["message"].startswith("--stop-after install-pol: no such step in this plan (its steps: preflight, ")
    assert f"install-pool-{GA}" in report["message"] and report["steps"] == []
    assert cluster.get(GA_POOLS, ns, GA) is None  # nothing was installed
    code, first = run(migrate, ns, "--probes", "0", "--stop-after", "preflight")  # the state was not left behind
    assert code == 0 and [s["step"] for s in first["steps"]] == ["preflight"], first


def test_a_gateway_that_rejects_one_group_is_detected_and_rolled_back(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any) -> None:
    # migration.md §9 case 4: the Gateway stays Programmed, the route says ResolvedRefs=False.
    status_writer.reject_group = K8S
    ns = preview_stack
    original = cluster.get(HTTPROUTES, ns, "llm-route")["spec"]
    code, report = run(migrate, ns, "--probes", "0")
    assert code == 5, report
    assert report["phase"] == "rolled-back"
    failed = [c for c in report["checks"] if not c["ok"]]
    assert any("ResolvedRefs" in c["check"] and "InvalidKind" in c["detail"] for c in failed), failed
    assert any(c["check"].startswith("Gateway") and c["ok"] for c in report["checks"])
    assert cluster.get(HTTPROUTES, ns, "llm-route")["spec"] == original
    assert cluster.get(GA_POOLS, ns, GA) is not None  # kept for debugging


def test_a_gitops_owned_route_is_refused_unless_forced(
        migrate: Any, cluster: Any, kubectl: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    kubectl.run("annotate", "-n", ns, "httproutes.gateway.networking.k8s.io", "llm-route",
                "argocd.argoproj.io/tracking-id=app:gateway.networking.k8s.io/HTTPRoute:default/llm-route")
    code, report = run(migrate, ns, "--probes", "0")
    assert code == 1 and "argocd.argoproj.io" in report["message"], report
    assert cluster.get(GA_POOLS, ns, GA) is None
    code, report = run(migrate, ns, "--probes", "0", "--force", "--stop-after", "preflight")
    assert code == 0, report


def test_rollback_is_refused_after_the_lock(migrate: Any, cluster: Any, preview_stack: str) -> None:
    from infergate.migrate.state import MigrationState

    ns = preview_stack
    plan = json.loads(migrate("plan", "-n", ns, "-o", "json").stdout)
    from infergate.migrate.plan import Plan

    state = MigrationState(Plan.from_dict(plan), phase="locked", locked=True, ga_weight=100)
    cluster.apply(CONFIGMAPS, state.to_configmap())
    refused = migrate("rollback", "-n", ns, "--route", "llm-route")
    assert refused.returncode == 6 and "--force" in refused.out
    forced = migrate("rollback", "-n", ns, "--route", "llm-route", "--force")
    assert forced.returncode == 0, forced.out


def test_weights_changed_by_another_writer_are_detected_and_rolled_back(
        migrate: Any, cluster: Any, kubectl: Any, preview_stack: str, status_writer: Any) -> None:
    # migration.md §9 case 10: a GitOps controller (or a person) reverts the weights mid-migration
    ns = preview_stack
    original = cluster.get(HTTPROUTES, ns, "llm-route")["spec"]
    code, first = run(migrate, ns, "--probes", "0", "--stop-after", "shift-0")
    assert code == 0, first
    kubectl.run("apply", "-n", ns, "-f", str(TESTDATA / "preview-stack.yaml"))  # the repo's version of the route
    code, report = run(migrate, ns, "--probes", "0")
    assert code == 5, report
    assert "drift: HTTPRoute llm-route was changed by another writer" in report["message"]
    assert cluster.get(HTTPROUTES, ns, "llm-route")["spec"] == original


def until(run: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """``run()`` every 0.2 s until ``done`` holds of its result or ``timeout`` passes: the last result."""
    last: list[T] = []

    def attempt() -> bool:
        last[:] = [run()]
        return done(last[0])

    with contextlib.suppress(WaitTimeout):
        wait_until(attempt, timeout, interval=0.2, what="the command's result")
    return last[0]


def test_verify_checks_statuses_and_fails_on_an_unresolved_backend(
        migrate: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    result = until(lambda: migrate("verify", "-n", ns, "--route", "llm-route", "--requests", "0", "-o", "json"),
                   lambda r: r.returncode == 0, 10)  # the status writer's first round
    assert result.returncode == 0, result.out
    names = [c["check"] for c in json.loads(result.stdout)["checks"]]
    assert names == ["HTTPRoute llm-route Accepted (parent inference-gateway)",
                     "HTTPRoute llm-route ResolvedRefs (parent inference-gateway)",
                     f"Gateway {ns}/inference-gateway Programmed",
                     f"InferencePool inferencepools.inference.networking.x-k8s.io/{PREVIEW} Accepted"]
    status_writer.reject_group = X
    result = until(lambda: migrate("verify", "-n", ns, "--route", "llm-route", "--requests", "0"),
                   lambda r: "InvalidKind" in r.stdout, 10)
    assert result.returncode == 5, result.out
    assert "InvalidKind" in result.stdout and "verification FAILED" in result.stdout


def test_plan_table_names_steps_objects_and_lossy_fields(migrate: Any, preview_stack: str) -> None:
    result = migrate("plan", "-n", preview_stack, "--steps", "0,25,100")
    assert result.returncode == 0, result.out
    for text in ("shift-25", "InferenceObjective", "spec.extensionRef.portNumber", "Lossy or changed fields",
                 "0 -> 25 -> 100", "delete-preview-crds"):
        assert text in result.stdout, text
    # the p99 gate's allowance for the default 60 probes (test_gates.py: the binomial test)
    assert "(at most 2 of 60 probes over it)" in " ".join(result.stdout.split())
    bad = migrate("plan", "-n", preview_stack, "--steps", "50,10")
    assert bad.returncode == 2 and "increase" in bad.out


def test_a_command_closes_its_cluster_connections(migrate: Any, preview_stack: str, status_writer: Any) -> None:
    """Each command's clients (a loop thread and an HTTP session each: the command's own, and
    the run's dashboard reader) end with the command, also when it fails: run in-process,
    commands leaked them on every call."""
    def connections() -> int:
        return sum(1 for t in threading.enumerate() if t.name in ("migrate-cluster", "status-kube") and t.is_alive())

    before = connections()
    assert migrate("plan", "-n", preview_stack).returncode == 0
    assert migrate("plan", "-n", preview_stack, "--steps", "50,10").returncode == 2
    assert migrate("status", "-n", preview_stack).returncode in (0, 1)
    code, report = run(migrate, preview_stack, "--probes", "0", "--dry-run")  # with its dashboard
    assert code == 0 and report["phase"] == "dry-run", report
    assert connections() == before


class StatusRaces:
    """The cluster, with a controller's status write landing between each of the first ``races``
    route reads and the PUT that follows it (the resourceVersion read is then stale: 409)."""

    def __init__(self, cluster: Any, races: int) -> None:
        self.cluster, self.races, self.puts = cluster, races, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def replace(self, resource: Any, obj: Any, **kwargs: Any) -> Any:
        self.puts += 1
        if self.races > 0:
            self.races -= 1
            meta = obj["metadata"]
            self.cluster.merge_patch_status(resource, meta["namespace"], meta["name"], {"status": {"parents": [
                {"parentRef": {"name": "inference-gateway"}, "controllerName": "example.com/racer",
                 "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": str(self.puts),
                                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]}})
        return self.cluster.replace(resource, obj, **kwargs)


def test_a_rollbacks_route_restore_retries_when_a_status_write_wins_the_race(cluster: Any, preview_stack: str) -> None:
    """A full run failed on this: the rollback read the route, a status write bumped its
    resourceVersion, and the restore's PUT got 409 Conflict and ended the run with a traceback.
    The restore now reads and PUTs again (bounded), as client-go's RetryOnConflict does."""
    ns = preview_stack
    original = cluster.get(HTTPROUTES, ns, "llm-route")
    shifted = copy.deepcopy(original)
    shifted["spec"]["rules"][0]["backendRefs"][0]["weight"] = 7  # what a migration step wrote
    cluster.replace(HTTPROUTES, shifted)
    plan = SimpleNamespace(original_route=original, namespace=ns, route="llm-route", final_routes=[original])

    racing = StatusRaces(cluster, races=2)
    Migrator(racing, None, RunOptions())._restore_route(plan)  # type: ignore[arg-type]
    assert racing.puts == 3  # two lost the race, the third won
    assert cluster.get(HTTPROUTES, ns, "llm-route")["spec"] == original["spec"]

    cluster.replace(HTTPROUTES, {**shifted, "metadata": cluster.get(HTTPROUTES, ns, "llm-route")["metadata"]})
    always = StatusRaces(cluster, races=RESTORE_CONFLICT_ATTEMPTS)
    with pytest.raises(Conflict):  # bounded: a restore that loses every race raises, it does not loop
        Migrator(always, None, RunOptions())._restore_route(plan)  # type: ignore[arg-type]
    assert always.puts == RESTORE_CONFLICT_ATTEMPTS
