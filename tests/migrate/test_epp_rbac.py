"""Objects mode gives the GA EPP its own least-privilege RBAC (a ServiceAccount, Role and
RoleBinding named like the EPP, the rules of charts/inferencepool): the rules against what the
real helm renders from the chart, the plan, and runs on the embedded API server (which does not
enforce RBAC: these tests check the objects, their rules and subjects, and who uses them)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.migrate.plan import PlanOptions, build_plan
from infergate.migrate.rbac import ga_epp_rbac_objects, ga_epp_role_rules
from infergate.migrate.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    GA_POOLS,
    PREVIEW_POOLS,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    SERVICES,
)

TESTDATA = Path(__file__).resolve().parent / "testdata"
REPO = Path(__file__).resolve().parents[2]
PREVIEW, GA = "vllm-llama3-8b-instruct-preview", "vllm-llama3-8b-instruct-ga"
EPP, PREVIEW_EPP = f"{GA}-epp", f"{PREVIEW}-epp"
X, K8S = "inference.networking.x-k8s.io", "inference.networking.k8s.io"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding")
RBAC = ((SERVICE_ACCOUNTS, "ServiceAccount"), (ROLES, "Role"), (ROLE_BINDINGS, "RoleBinding"))


# -- the rules are the chart's ----------------------------------------------------------------------


def render_rbac(helm_bin: str, home: Path, release: str, namespace: str, api_version: str) -> dict[str, Any]:
    """The chart's ServiceAccount, Role and RoleBinding as the real `helm template` renders them."""
    env = {"HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [helm_bin, "template", release, str(REPO / "charts" / "inferencepool"), "--namespace", namespace,
         "--set", "inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct",
         "--set", f"inferencePool.apiVersion={api_version}", "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(proc.stdout) if d}
    assert sorted(docs) == sorted(RBAC_KINDS), docs
    return docs


def without_labels(obj: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    out["metadata"].pop("labels", None)
    return out


def test_the_rules_are_the_ones_the_chart_renders_for_a_ga_pool(helm_bin: str, tmp_path: Path) -> None:
    chart = render_rbac(helm_bin, tmp_path, GA, "prod", f"{K8S}/v1")
    assert chart["Role"]["rules"] == ga_epp_role_rules()
    # and the three objects are the chart's (same names, subjects, roleRef) but for the labels
    ours = {o["kind"]: o for o in ga_epp_rbac_objects(EPP, "prod", {"inferencepool": EPP})}
    for kind in RBAC_KINDS:
        assert without_labels(ours[kind]) == without_labels(chart[kind]), kind
    # what the copy must not keep: the preview EPP's grants (the chart's preview rendering)
    preview = render_rbac(helm_bin, tmp_path, PREVIEW, "prod", f"{X}/v1alpha2")["Role"]["rules"]
    assert preview != ga_epp_role_rules()
    assert {"inferencemodels"} <= {r for rule in preview for r in rule["resources"]}
    assert "inferencemodels" not in {r for rule in ga_epp_role_rules() for r in rule["resources"]}
    assert [(rule["apiGroups"], rule["resources"]) for rule in ga_epp_role_rules()] == [
        ([K8S], ["inferencepools"]), ([X], ["inferenceobjectives", "inferencemodelrewrites"]),
        (["llm-d.ai"], ["inferenceobjectives", "inferencemodelrewrites"]), ([""], ["pods"])]


# -- the plan (pure) ------------------------------------------------------------------------------------


def stack() -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all((TESTDATA / "preview-stack.yaml").read_text()):
        doc["metadata"]["namespace"] = "prod"
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def plan_for(objs: dict[str, list[dict[str, Any]]], **options: Any) -> Any:
    return build_plan(namespace="prod", route=objs["HTTPRoute"][0], preview_pools=objs["InferencePool"],
                      preview_models=objs["InferenceModel"], existing_ga_pools=[], existing_objectives=[],
                      epp_deployments={PREVIEW: PREVIEW_EPP},
                      epp_objects={PREVIEW: (objs["Deployment"][0], objs["Service"][0])},
                      ga_crds_missing=(), options=PlanOptions(**options))


def test_the_copied_epp_runs_as_its_own_service_account() -> None:
    objs = stack()
    pod = objs["Deployment"][0]["spec"]["template"]["spec"]
    pod["serviceAccountName"] = pod["serviceAccount"] = "preview-epp"  # the alias too, as old manifests do
    (pool,) = plan_for(objs).pools
    kinds = [o["kind"] for o in pool.ga_epp_objects]
    assert kinds == [*RBAC_KINDS, "Deployment", "Service"]  # RBAC before the pods that need it
    by_kind = {o["kind"]: o for o in pool.ga_epp_objects}
    for obj in pool.ga_epp_objects:
        assert (obj["metadata"]["name"], obj["metadata"]["namespace"]) == (EPP, "prod"), obj["kind"]
    copied = by_kind["Deployment"]["spec"]["template"]["spec"]
    assert copied["serviceAccountName"] == EPP
    assert "serviceAccount" not in copied
    assert "automountServiceAccountToken" not in copied
    assert by_kind["Role"]["rules"] == ga_epp_role_rules()
    assert by_kind["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": EPP, "namespace": "prod"}]
    assert by_kind["RoleBinding"]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                 "name": EPP}
    assert pod["serviceAccountName"] == "preview-epp"  # the preview EPP's own Deployment is not changed
    step = next(s for s in plan_for(objs).steps if s.id == f"install-pool-{GA}")
    assert f"ServiceAccount {EPP}, Role {EPP}, RoleBinding {EPP}" in step.description
    notes = plan_for(objs).notes
    assert any(f"ServiceAccount {EPP}" in n and f"get/list/watch inferencepools.{K8S}" in n for n in notes), notes
    assert not any("automountServiceAccountToken" in n for n in notes)


def test_a_preview_epp_without_a_token_keeps_it_so_and_the_plan_says_so() -> None:
    objs = stack()
    objs["Deployment"][0]["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    plan = plan_for(objs)
    dep = next(o for o in plan.pools[0].ga_epp_objects if o["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == EPP
    (note,) = [n for n in plan.notes if "automountServiceAccountToken: false" in n]
    assert EPP in note and "no credentials of its own" in note


def test_helm_mode_leaves_the_rbac_to_the_chart() -> None:
    plan = plan_for(stack(), install="helm")
    assert plan.pools[0].ga_epp_objects == ()
    assert not any("ServiceAccount" in n for n in plan.notes)


# -- on the embedded API server ------------------------------------------------------------------------


def run(migrate: Any, ns: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = migrate("run", "-n", ns, "-o", "json", "--ready-timeout", "3", "--analysis-delay", "0", *args)
    return result.returncode, json.loads(result.stdout)


def versions(cluster: Any, ns: str) -> dict[str, Any]:
    """resourceVersion of each GA EPP object (None: missing); for the Deployment, whose status the
    status writer updates, its generation (the spec's version)."""
    out: dict[str, Any] = {}
    for resource, kind in (*RBAC, (DEPLOYMENTS, "Deployment"), (SERVICES, "Service")):
        obj = cluster.get(resource, ns, EPP)
        key = "generation" if kind == "Deployment" else "resourceVersion"
        out[kind] = None if obj is None else obj["metadata"][key]
    return out


def assert_ga_epp_rbac(cluster: Any, ns: str) -> None:
    assert cluster.get(SERVICE_ACCOUNTS, ns, EPP) is not None
    role = cluster.get(ROLES, ns, EPP)
    assert role is not None and role["rules"] == ga_epp_role_rules()
    binding = cluster.get(ROLE_BINDINGS, ns, EPP)
    assert binding is not None
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": EPP, "namespace": ns}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": EPP}
    pod = cluster.get(DEPLOYMENTS, ns, EPP)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == EPP and "serviceAccount" not in pod


def test_install_creates_the_rbac_and_rollback_resume_retry_treat_it_as_the_ga_epp(
        migrate: Any, cluster: Any, kubectl: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    # the preview EPP runs as an account of its own, named with the deprecated alias as well
    kubectl.run("create", "serviceaccount", "-n", ns, "preview-epp")
    kubectl.run("patch", "-n", ns, "deployments.apps", PREVIEW_EPP, "--type", "merge", "-p", json.dumps(
        {"spec": {"template": {"spec": {"serviceAccountName": "preview-epp", "serviceAccount": "preview-epp"}}}}))
    assert versions(cluster, ns) == dict.fromkeys(("ServiceAccount", "Role", "RoleBinding", "Deployment",
                                                   "Service"))
    code, first = run(migrate, ns, "--probes", "0", "--stop-after", f"install-pool-{GA}")
    assert code == 0, first
    assert "with its own ServiceAccount/Role/RoleBinding" in first["steps"][-1]["detail"], first["steps"]
    assert_ga_epp_rbac(cluster, ns)
    installed = versions(cluster, ns)
    assert None not in installed.values(), installed

    # resumed: the install step is not run again, nothing of the GA EPP changes
    code, second = run(migrate, ns, "--probes", "0", "--gateway-url", "http://127.0.0.1:9")
    assert code == 4, second  # paused at the first analysis (no traffic)
    assert {s["step"]: s["status"] for s in second["steps"]}[f"install-pool-{GA}"] == "done earlier"
    assert versions(cluster, ns) == installed

    # rollback restores the route and keeps the GA stack for debugging, the EPP with its RBAC:
    # the EPP that is kept must not lose the account it runs as
    rolled = migrate("rollback", "-n", ns, "--route", "llm-route")
    assert rolled.returncode == 0, rolled.out
    assert versions(cluster, ns) == installed
    assert_ga_epp_rbac(cluster, ns)

    # --retry runs the install step again: the existing EPP and its RBAC stay as they are
    code, retried = run(migrate, ns, "--probes", "0", "--gateway-url", "http://127.0.0.1:9", "--retry")
    assert code == 4, retried
    assert {s["step"]: s["status"] for s in retried["steps"]}[f"install-pool-{GA}"] == "done"
    assert versions(cluster, ns) == installed
    # the preview EPP's account and Deployment were never touched
    assert cluster.get(SERVICE_ACCOUNTS, ns, "preview-epp") is not None
    preview_pod = cluster.get(DEPLOYMENTS, ns, PREVIEW_EPP)["spec"]["template"]["spec"]
    assert preview_pod["serviceAccountName"] == "preview-epp"


class _Serving(BaseHTTPRequestHandler):
    """Answers every completion with one streamed chunk (the simple path's downtime monitor)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'data: {"choices": [{"text": "ok"}]}\n\ndata: [DONE]\n\n'
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def serving_gateway() -> Iterator[str]:
    """A loopback stand-in for a gateway that serves: these tests are about objects, not downtime."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Serving)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_teardown_keeps_the_ga_epp_rbac_and_a_second_run_changes_nothing(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any, serving_gateway: str) -> None:
    ns = preview_stack
    code, report = run(migrate, ns, "--path", "simple", "--probes", "0", "--gateway-url", serving_gateway)
    assert code == 0 and report["phase"] == "done", report
    assert cluster.get(PREVIEW_POOLS, ns, PREVIEW) is None
    assert cluster.get(DEPLOYMENTS, ns, PREVIEW_EPP) is None  # the preview side is gone ...
    assert cluster.get(GA_POOLS, ns, GA) is not None
    assert_ga_epp_rbac(cluster, ns)  # ... the GA EPP's RBAC is not
    done = versions(cluster, ns)
    state = cluster.get(CONFIGMAPS, ns, "infergate-migration-llm-route")["metadata"]["resourceVersion"]

    code, again = run(migrate, ns, "--path", "simple", "--probes", "0", "--gateway-url", serving_gateway)
    assert code == 0 and "nothing to do" in again["message"], again
    assert versions(cluster, ns) == done
    assert cluster.get(CONFIGMAPS, ns, "infergate-migration-llm-route")["metadata"]["resourceVersion"] == state


def test_the_plan_lists_the_rbac_objects_in_every_output(migrate: Any, preview_stack: str) -> None:
    ns = preview_stack
    for fmt in ("json", "yaml"):
        result = migrate("plan", "-n", ns, "-o", fmt)
        assert result.returncode == 0, result.out
        doc = json.loads(result.stdout) if fmt == "json" else yaml.safe_load(result.stdout)
        (pool,) = doc["pools"]
        objs = {o["kind"]: o for o in pool["gaEppObjects"]}
        assert list(objs) == [*RBAC_KINDS, "Deployment", "Service"], fmt
        assert objs["Role"]["rules"] == ga_epp_role_rules()
        assert objs["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": EPP, "namespace": ns}]
        assert objs["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == EPP
    table = migrate("plan", "-n", ns)
    assert table.returncode == 0, table.out
    text = " ".join(table.stdout.split())  # the table wraps long cells
    for expected in ("ServiceAccount", "RoleBinding", f"get/list/watch inferencepools.{K8S}",
                     f"inferenceobjectives.{X}"):
        assert expected in text, expected
    created = text[text.index("Objects to create"):text.index("Steps")]
    for kind in ("InferencePool", *RBAC_KINDS, "Deployment", "Service"):
        assert kind in created, kind
    assert EPP in created and "GA EPP of" in created


def test_dry_run_sends_the_rbac_objects_and_creates_none(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    code, report = run(migrate, ns, "--probes", "0", "--dry-run")
    assert code == 0 and report["phase"] == "dry-run", report
    install = next(s for s in report["steps"] if s["step"] == f"install-pool-{GA}")
    assert install["status"] == "dry-run"
    assert "with its own ServiceAccount/Role/RoleBinding" in install["detail"], install
    assert versions(cluster, ns) == dict.fromkeys(("ServiceAccount", "Role", "RoleBinding", "Deployment",
                                                   "Service"))
