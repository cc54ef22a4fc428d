"""`infergate migrate run` (the CLI, as a user runs it) on `infergate up --authorization-mode RBAC`:
the API server enforces Roles and their bindings, and every local pod (EPP, simulator) reads the
API with a token of its own ServiceAccount. The preview stack comes from the raw manifests of
examples/demo/preview/ (no Helm release, so the migration takes objects mode and creates the GA
EPP's own ServiceAccount, Role and RoleBinding, src/infergate/migrate/rbac.py); the preview EPP
runs as its own least-privilege account from those manifests. Zero-downtime path under a light
streaming load (no throughput assertion: it does not need to run alone)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infergate.util.net import free_port

from ..support.migrate_report import failed_run
from .test_up import Up, epp_metrics, running_up, serve_gateway, sim_manifest, up_load

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("migrate-up-rbac"), pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
PREVIEW, GA = "vllm-llama3-8b-instruct-preview", "vllm-llama3-8b-instruct-ga"
PREVIEW_EPP, GA_EPP = f"{PREVIEW}-epp", f"{GA}-epp"
X, K8S = "inference.networking.x-k8s.io", "inference.networking.k8s.io"


@pytest.fixture
def up_rbac(tmp_path: Path) -> Iterator[Up]:
    with running_up(tmp_path, "--authorization-mode", "RBAC") as handle:
        yield handle


def can_i(up: Up, verb: str, resource: str, account: str) -> str:
    """`kubectl auth can-i` for a ServiceAccount of namespace default: "yes" or "no" (exit 0 or 1)."""
    run = up.sh(f"kubectl auth can-i {verb} {resource} -n default --as=system:serviceaccount:default:{account}",
                check=False)
    assert run.returncode in (0, 1), run.stderr
    return run.stdout.strip()


def scheduled(metrics: str) -> int:
    """Requests an EPP has scheduled: the sum of its ``inference_model_request_total`` series."""
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith("inference_model_request_total{"))


def test_zero_downtime_objects_mode_under_rbac_on_infergate_up(up_rbac: Up) -> None:
    up = up_rbac
    listen = free_port()
    sim = sim_manifest()
    up.sh("kubectl apply -f config/crd/preview.yaml")
    up.sh(f"kubectl apply -f - <<'EOF'\n{sim}EOF\n")
    up.sh("kubectl apply -f examples/demo/preview/pool.yaml -f examples/demo/preview/models.yaml "
          "-f examples/demo/routes/preview.yaml")
    address = serve_gateway(up, listen, 90)
    # RBAC is enforced in this stack: each account may read what its Role grants, nothing else
    # (under AlwaysAllow every answer would be yes)
    assert up.sh("kubectl get pod -l app=vllm-llama3-8b-instruct-preview-epp "
                 "-o jsonpath='{.items[*].spec.serviceAccountName}'").stdout == PREVIEW_EPP
    assert can_i(up, "list", f"inferencepools.{X}", PREVIEW_EPP) == "yes"
    assert can_i(up, "list", f"inferencepools.{K8S}", PREVIEW_EPP) == "no"
    assert can_i(up, "list", "pods", "default") == "no"

    load = up_load(f"http://{address()}:{listen}", rate=8.0)
    with load.in_thread(warmup_s=1, join_s=60):
        # --p99-ttft-factor 100: the latency gate is not asserted here (test_gates.py tests it): on 2
        # shared cores the p99 of a few dozen probes moved 5x during a migration
        run = up.sh("infergate migrate run -n default --path zero-downtime --install objects --probes 20 "
                    "--analysis-delay 0.5 --p99-ttft-factor 100 --ready-timeout 60 --fast -o json", check=False, timeout=180)
    report = json.loads(run.stdout) if run.stdout.strip().startswith("{") else {}
    assert run.returncode == 0, failed_run(run.stdout, run.stderr)
    assert report["phase"] == "done", report
    failed = Counter((m, s) for _, m, s in load.results if s != 200)
    assert not failed, failed
    assert len(load.results) >= 40, len(load.results)

    # the GA EPP (objects mode: a copy of the preview EPP) is Ready as its own ServiceAccount, whose
    # Role grants the GA pools and not the preview ones
    pod = up.json("get", "pod", "-l", f"inferencepool={GA_EPP}")
    items = pod["items"]
    assert isinstance(items, list) and len(items) == 1, items
    name = items[0]["metadata"]["name"]
    assert up.sh(f"kubectl get pod {name} -o jsonpath='{{.spec.serviceAccountName}}'").stdout == GA_EPP
    ready = up.sh(f"kubectl get pod {name} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}'")
    assert ready.stdout == "True"
    assert can_i(up, "list", f"inferencepools.{K8S}", GA_EPP) == "yes"
    assert can_i(up, "watch", f"inferenceobjectives.{X}", GA_EPP) == "yes"
    assert can_i(up, "list", f"inferencepools.{X}", GA_EPP) == "no"
    assert can_i(up, "list", f"inferencepools.{K8S}", PREVIEW_EPP) == "no"
    for kind, obj in (("serviceaccount", GA_EPP), ("role", GA_EPP), ("rolebinding", GA_EPP)):
        up.sh(f"kubectl get {kind} {obj}")

    # requests after the switch are scheduled by the GA EPP: its own counter grows by exactly them
    from infergate.migrate.resources import GA_POOLS

    url = epp_metrics(up, GA_POOLS, GA)
    before = scheduled(httpx.get(url, timeout=10).text)
    with httpx.Client(timeout=30) as client:
        statuses = [client.post(f"http://{address()}:{listen}/v1/completions", json={
            "model": ("food-review", "meta-llama/Llama-3.1-8B-Instruct")[i % 2], "prompt": "hi",
            "max_tokens": 2}).status_code for i in range(10)]
    assert statuses == [200] * 10
    assert scheduled(httpx.get(url, timeout=10).text) - before == 10
    route = up.json("get", "httproute", "llm-route")
    refs = [ref for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]  # type: ignore[index]
    assert refs and {(ref.get("group"), ref["name"]) for ref in refs} == {(K8S, GA)}, refs
