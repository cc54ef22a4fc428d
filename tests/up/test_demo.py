"""`infergate demo --exit-after-requests` end to end: `infergate up`, the simulators, both stacks
(split 50/50), real completions through Envoy; every request 200, served by one of the
simulator pods, each pool's EPP scheduling part of the split; nothing left running. Also under
`--authorization-mode RBAC` with the manifests of examples/demo/ (each EPP's own ServiceAccount
and least-privilege Role, the chart's rules, checked against what the real helm renders).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import private_cidr, processes_mentioning

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("up-demo")]
POOLS = {"preview": "vllm-llama3-8b-instruct-preview", "ga": "vllm-llama3-8b-instruct-ga"}
GROUPS = {"preview": "inference.networking.x-k8s.io", "ga": "inference.networking.k8s.io"}


def run_demo(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str, Path, str]:
    state, result_file = tmp_path / "demo", tmp_path / "result.json"
    pods, gateways = private_cidr(8000), private_cidr(80)
    proc = subprocess.run(
        [sys.executable, "-m", "infergate", "demo", "--exit-after-requests", "--state-dir", str(state),
         "--pod-cidr", pods, "--address-pool", gateways, "--sim-time-scale", "10", "--json-result", str(result_file),
         *args], capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(result_file.read_text())
    assert result["gateway_address"].startswith(gateways.rsplit(".", 1)[0] + ".")
    requests = result["requests"]
    assert [(r["model"], r["stream"]) for r in requests] == [
        ("meta-llama/Llama-3.1-8B-Instruct", False), ("meta-llama/Llama-3.1-8B-Instruct", True),
        ("food-review", False), ("food-review", True)]
    assert all(r["status"] == 200 for r in requests), requests
    assert all(r["pod"].startswith("vllm-llama3-8b-instruct-") and "-epp-" not in r["pod"] for r in requests)
    assert all(r["text"].strip() for r in requests)
    # the printed walkthrough and the served pods are in the output; nothing keeps running
    assert "IP=$(kubectl get gateway/inference-gateway -o jsonpath='{.status.addresses[0].value}')" in proc.stderr
    assert re.search(r"Dashboard.*: http://127\.0\.0\.1:\d+/dashboard/\n", proc.stderr), proc.stderr[-2000:]
    assert requests[0]["pod"] in proc.stderr
    assert "stopped; no process left running" in proc.stderr
    assert processes_mentioning(str(state.resolve())) == []
    assert processes_mentioning(f"POD_IP={pods.rsplit('.', 1)[0]}.") == []  # no simulator or EPP left
    return result, proc.stderr, state, pods


def test_demo_split_stack(tmp_path: Path, kubectl_bin: str, helm_bin: str, repo_root: Path) -> None:
    result, _, _, _ = run_demo(tmp_path, "--stack", "split")
    # both pools took part in the split, each scheduled by its own EPP, and together they saw all 40
    counts = result["split_counts"]
    assert set(counts) == {"preview", "ga"} and sum(counts.values()) == 40, counts
    assert min(counts.values()) >= 5, counts
    expected = "helm" if (repo_root / "charts" / "inferencepool" / "Chart.yaml").exists() else "manifests"
    assert result["installed_with"] == {"preview": expected, "ga": expected}


def test_demo_preview_stack_from_manifests(tmp_path: Path, kubectl_bin: str) -> None:
    result, output, _, _ = run_demo(tmp_path, "--stack", "preview", "--install-with", "manifests")
    assert result["installed_with"] == {"preview": "manifests"} and result["split_counts"] == {}
    # the InferenceModel food-review sends its requests to the adapters of its 90/10 canary
    served = {r["served_model"] for r in result["requests"] if r["model"] == "food-review"}
    assert served <= {"food-review-1", "food-review-2"}, served
    assert "kubectl apply -f -" in output




def test_demo_split_stack_from_manifests_under_rbac(tmp_path: Path, kubectl_bin: str) -> None:
    # the manifests path is the one whose RBAC objects live in examples/demo/: without them each EPP
    # would run as `default`, be refused its pool and pods (403) and never become Ready
    result, output, _, _ = run_demo(tmp_path, "--stack", "split", "--install-with", "manifests",
                                    "--authorization-mode", "RBAC")
    assert result["installed_with"] == {"preview": "manifests", "ga": "manifests"}
    assert result["authorization_mode"] == "RBAC" and "(RBAC enforced)" in output
    assert result["epp_service_accounts"] == {stack: [f"{pool}-epp"] for stack, pool in POOLS.items()}
    counts = result["split_counts"]
    assert sum(counts.values()) == 40 and min(counts.values()) >= 5, counts
    # enforced, not AlwaysAllow: each EPP's account may list its pools, the namespace's default may not
    expected = {}
    for stack, pool in POOLS.items():
        expected[f"system:serviceaccount:default:{pool}-epp list inferencepools.{GROUPS[stack]}"] = "yes"
        expected[f"system:serviceaccount:default:default list inferencepools.{GROUPS[stack]}"] = "no"
    assert result["can_list_pools"] == expected


@pytest.mark.parametrize("stack", ["preview", "ga"])
def test_the_manifests_give_each_epp_the_charts_rbac(stack: str, tmp_path: Path, helm_bin: str,
                                                       repo_root: Path) -> None:
    docs = [d for d in yaml.safe_load_all((repo_root / "examples" / "demo" / stack / "pool.yaml").read_text()) if d]
    ours = {d["kind"]: d for d in docs}
    epp = f"{POOLS[stack]}-epp"
    assert ours["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == epp
    home = tmp_path / "helm"
    api_version = "inference.networking.x-k8s.io/v1alpha2" if stack == "preview" else "inference.networking.k8s.io/v1"
    proc = subprocess.run(
        [helm_bin, "template", POOLS[stack], str(repo_root / "charts" / "inferencepool"), "--namespace", "default",
         "--set", "inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct",
         "--set", f"inferencePool.apiVersion={api_version}", "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
             "HELM_DATA_HOME": str(home / "data"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    chart = {d["kind"]: d for d in yaml.safe_load_all(proc.stdout) if d}
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        chart[kind]["metadata"].pop("labels", None)
        assert ours[kind] == chart[kind], kind
    assert GROUPS[stack] in chart["Role"]["rules"][0]["apiGroups"]


@pytest.mark.parametrize(("args", "message"), [
    (["--address-pool", "nonsense"], "Error: --address-pool: 'nonsense' does not appear to be an IPv4 or IPv6 network"),
    (["--pod-cidr", "10.0.0.0/8"], "Error: --pod-cidr 10.0.0.0/8 is not inside 127.0.0.0/8 (loopback)"),
    (["--gateway-port", "70000"], "Invalid value for '--gateway-port': 70000 is not in the range 0<=x<=65535."),
    (["--sim-time-scale", "0"], "Invalid value for '--sim-time-scale': 0.0 is not in the range x>0.0."),
])
def test_bad_demo_flags_are_usage_errors_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    """Before: a traceback (the networks) or a failed `kubectl apply` once the control plane was up (the port)."""
    from click.testing import CliRunner

    from infergate.cli.demo import command as demo_command

    result = CliRunner().invoke(demo_command, ["--state-dir", str(tmp_path / "demo"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "demo").exists()  # nothing was started
