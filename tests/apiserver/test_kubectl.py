"""The real kubectl v1.37 against the embedded API server: the seed document's commands,
output formats, selectors, namespaces, watch, describe, patch and server-side apply."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("apiserver-kubectl")]

OBJECTIVES = """\
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: food-review
spec:
  priority: 2
  poolRef:
    group: inference.networking.k8s.io
    name: vllm-llama3-8b-instruct-ga
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: base-model
spec:
  priority: 2
  poolRef:
    group: inference.networking.k8s.io
    name: vllm-llama3-8b-instruct-ga
---
"""

ROUTE_SPLIT = """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: llm-route
spec:
  parentRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: inference-gateway
  rules:
  - backendRefs:
    - group: inference.networking.x-k8s.io
      kind: InferencePool
      name: vllm-llama3-8b-instruct-preview
      weight: 50
    - group: inference.networking.k8s.io
      kind: InferencePool
      name: vllm-llama3-8b-instruct-ga
      weight: 50
---
"""

ROUTE_FULL = """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: llm-route
spec:
  parentRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: inference-gateway
  rules:
  - backendRefs:
    - group: inference.networking.k8s.io
      kind: InferencePool
      name: vllm-llama3-8b-instruct-ga
      weight: 100
---
"""

GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: inference-gateway
  labels:
    tier: edge
spec:
  gatewayClassName: gke-l7-regional-external-managed
  listeners:
  - name: http
    protocol: HTTP
    port: 80
"""


def pool(name: str, *, api: str = "inference.networking.k8s.io/v1", app: str = "vllm", port: int = 8000,
         labels: str = "{}") -> str:
    if api.endswith("v1alpha2"):
        spec = (f"  selector: {{app: {app}}}\n  targetPortNumber: {port}\n"
                f"  extensionRef: {{name: {name}-epp}}\n")
    else:
        spec = (f"  selector:\n    matchLabels: {{app: {app}}}\n  targetPorts: [{{number: {port}}}]\n"
                f"  endpointPickerRef: {{name: {name}-epp, port: {{number: 9002}}}}\n")
    return f"apiVersion: {api}\nkind: InferencePool\nmetadata:\n  name: {name}\n  labels: {labels}\nspec:\n{spec}"


def rows(text: str) -> list[list[str]]:
    """Table output split into rows of cells (columns are separated by 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def set_gateway_status(http: httpx.Client, namespace: str, address: str) -> None:
    status = {"status": {"addresses": [{"type": "IPAddress", "value": address}],
                         "conditions": [{"type": "Programmed", "status": "True", "reason": "Programmed",
                                         "message": "programmed", "observedGeneration": 1,
                                         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    response = http.patch(
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/gateways/inference-gateway/status",
        json=status, headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200, response.text


def test_get_by_full_resource_name_all_namespaces_and_empty(upstream_crds, kubectl, namespace) -> None:
    # nothing of the preview kind anywhere yet
    empty = kubectl("get", "inferencepools.inference.networking.x-k8s.io", "--all-namespaces")
    assert empty.stdout == ""
    assert "No resources found" in empty.stderr
    models = kubectl("get", "inferencemodels.inference.networking.x-k8s.io", "--all-namespaces")
    assert models.stdout == "" and models.stderr.strip() == "No resources found"
    kubectl("apply", "-n", namespace, "-f", "-", input=pool("vllm-llama3-8b-instruct-preview",
                                                             api="inference.networking.x-k8s.io/v1alpha2"))
    kubectl("apply", "-n", namespace, "-f", "-", input=pool("vllm-llama3-8b-instruct-ga"))
    preview = rows(kubectl("get", "inferencepools.inference.networking.x-k8s.io", "--all-namespaces").stdout)
    assert preview[0] == ["NAMESPACE", "NAME", "AGE"]
    assert [namespace, "vllm-llama3-8b-instruct-preview"] == preview[1][:2]
    assert len(preview) == 2
    ga = rows(kubectl("get", "inferencepools.inference.networking.k8s.io", "-n", namespace).stdout)
    assert [r[0] for r in ga] == ["NAME", "vllm-llama3-8b-instruct-ga"]
    short = rows(kubectl("get", "infpool", "-n", namespace).stdout)
    assert [r[0] for r in short] == ["NAME", "vllm-llama3-8b-instruct-ga"]
    preview_short = rows(kubectl("get", "xinfpool", "-n", namespace).stdout)
    assert [r[0] for r in preview_short] == ["NAME", "vllm-llama3-8b-instruct-preview"]
    elsewhere = kubectl("get", "infpool", "-n", "default")
    assert "No resources found in default namespace." in elsewhere.stderr


def test_apply_objectives_and_route_create_then_change(upstream_crds, kubectl, namespace) -> None:
    created = kubectl("apply", "-n", namespace, "-f", "-", input=OBJECTIVES)
    assert created.stdout.splitlines() == [
        "inferenceobjective.inference.networking.x-k8s.io/food-review created",
        "inferenceobjective.inference.networking.x-k8s.io/base-model created",
    ]
    again = kubectl("apply", "-n", namespace, "-f", "-", input=OBJECTIVES)
    assert "inferenceobjective.inference.networking.x-k8s.io/food-review unchanged" in again.stdout
    changed = kubectl("apply", "-n", namespace, "-f", "-", input=OBJECTIVES.replace("priority: 2", "priority: 5", 1))
    assert "inferenceobjective.inference.networking.x-k8s.io/food-review configured" in changed.stdout
    assert "inferenceobjective.inference.networking.x-k8s.io/base-model unchanged" in changed.stdout
    priority = kubectl("get", "inferenceobjective", "food-review", "-n", namespace, "-o", "jsonpath={.spec.priority}")
    assert priority.stdout == "5"

    assert "httproute.gateway.networking.k8s.io/llm-route created" in kubectl(
        "apply", "-n", namespace, "-f", "-", input=ROUTE_SPLIT).stdout
    route = kubectl("get", "httproute", "llm-route", "-n", namespace, "-o", "json").json()
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [50, 50]
    assert route["metadata"]["generation"] == 1
    assert "httproute.gateway.networking.k8s.io/llm-route configured" in kubectl(
        "apply", "-n", namespace, "-f", "-", input=ROUTE_FULL).stdout
    route = kubectl("get", "httproute", "llm-route", "-n", namespace, "-o", "json").json()
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in refs] == [("vllm-llama3-8b-instruct-ga", 100)]
    assert route["metadata"]["generation"] == 2


def test_gateway_wide_printer_columns_and_jsonpath(upstream_crds, kubectl, namespace, http) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=GATEWAY)
    before = rows(kubectl("get", "gateway", "-o", "wide", "-n", namespace).stdout)
    assert before[0] == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"]
    assert before[1][:2] == ["inference-gateway", "gke-l7-regional-external-managed"]
    set_gateway_status(http, namespace, "10.1.2.3")
    after = rows(kubectl("get", "gateway", "-o", "wide", "-n", namespace).stdout)
    assert after[1][:4] == ["inference-gateway", "gke-l7-regional-external-managed", "10.1.2.3", "True"]
    assert re.fullmatch(r"\d+s", after[1][4])
    ip = kubectl("get", "gateway/inference-gateway", "-n", namespace, "-o", "jsonpath={.status.addresses[0].value}")
    assert ip.stdout == "10.1.2.3"
    # the wide-only GatewayClass column (priority 1 "Description") appears only with -o wide
    kubectl("apply", "-f", "-", input="apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n"
            f"  name: class-{namespace}\nspec:\n  controllerName: infergate.io/gateway\n  description: ours\n")
    narrow = rows(kubectl("get", "gatewayclass", f"class-{namespace}").stdout)
    wide = rows(kubectl("get", "gatewayclass", f"class-{namespace}", "-o", "wide").stdout)
    assert "DESCRIPTION" not in narrow[0] and wide[0][-1] == "DESCRIPTION" and wide[1][-1] == "ours"
    kubectl("delete", "gatewayclass", f"class-{namespace}")


def test_output_formats_and_label_selectors(upstream_crds, kubectl, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=pool("a", labels="{team: red}"))
    kubectl("apply", "-n", namespace, "-f", "-", input=pool("b", labels="{team: blue}"))
    names = kubectl("get", "infpool", "-n", namespace, "-o", "name").stdout.split()
    assert names == ["inferencepool.inference.networking.k8s.io/a", "inferencepool.inference.networking.k8s.io/b"]
    red = kubectl("get", "infpool", "-n", namespace, "-l", "team=red", "-o", "name").stdout.split()
    assert red == ["inferencepool.inference.networking.k8s.io/a"]
    not_red = kubectl("get", "infpool", "-n", namespace, "-l", "team!=red", "-o", "name").stdout.split()
    assert not_red == ["inferencepool.inference.networking.k8s.io/b"]
    in_set = kubectl("get", "infpool", "-n", namespace, "-l", "team in (red,blue)", "-o", "name").stdout.split()
    assert len(in_set) == 2
    listing = kubectl("get", "infpool", "-n", namespace, "-o", "json").json()
    assert listing["kind"] == "List"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["a", "b"]
    assert listing["items"][0]["apiVersion"] == "inference.networking.k8s.io/v1"
    assert listing["items"][0]["kind"] == "InferencePool"
    yaml_text = kubectl("get", "infpool", "a", "-n", namespace, "-o", "yaml").stdout
    assert "kind: InferencePool" in yaml_text and "team: red" in yaml_text and "- number: 8000" in yaml_text
    assert "managedFields" not in yaml_text
    labels = rows(kubectl("get", "infpool", "-n", namespace, "--show-labels").stdout)
    assert labels[0] == ["NAME", "AGE", "LABELS"] and labels[1][2] == "team=red"
    everywhere = rows(kubectl("get", "infpool", "-A", "-l", "team=blue").stdout)
    assert [namespace, "b"] in [r[:2] for r in everywhere]
    chunked = kubectl("get", "infpool", "-n", namespace, "--chunk-size=1", "-o", "name").stdout.split()
    assert chunked == names  # kubectl followed the continue tokens
    sorted_rows = rows(kubectl("get", "infpool", "-n", namespace, "--sort-by=.metadata.name").stdout)
    assert [r[0] for r in sorted_rows[1:]] == ["a", "b"]


def test_delete_by_name_and_by_file(upstream_crds, kubectl, namespace, tmp_path: Path) -> None:
    manifest = tmp_path / "objectives.yaml"
    manifest.write_text(OBJECTIVES)
    kubectl("apply", "-n", namespace, "-f", str(manifest))
    by_name = kubectl("delete", "inferenceobjective", "food-review", "-n", namespace)
    assert by_name.stdout.strip() == (
        f'inferenceobjective.inference.networking.x-k8s.io "food-review" deleted from {namespace} namespace')
    by_file = kubectl("delete", "-n", namespace, "-f", str(manifest), check=False)
    assert f'inferenceobjective.inference.networking.x-k8s.io "base-model" deleted from {namespace} namespace' \
        in by_file.stdout
    assert 'Error from server (NotFound): error when deleting' in by_file.stderr
    assert '"food-review" not found' in by_file.stderr
    missing = kubectl("get", "inferenceobjective", "base-model", "-n", namespace, check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        'Error from server (NotFound): inferenceobjectives.inference.networking.x-k8s.io "base-model" not found')


def test_patch_merge_and_server_side_apply(upstream_crds, kubectl, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=pool("p"))
    patched = kubectl("patch", "infpool", "p", "-n", namespace, "--type", "merge",
                      "-p", '{"spec":{"targetPorts":[{"number":9000}]}}')
    assert patched.stdout.strip() == "inferencepool.inference.networking.k8s.io/p patched"
    assert kubectl("get", "infpool", "p", "-n", namespace, "-o", "jsonpath={.spec.targetPorts[0].number}").stdout \
        == "9000"
    noop = kubectl("patch", "infpool", "p", "-n", namespace, "--type", "merge",
                   "-p", '{"spec":{"targetPorts":[{"number":9000}]}}')
    assert noop.stdout.strip() == "inferencepool.inference.networking.k8s.io/p patched (no change)"
    json_patched = kubectl("patch", "infpool", "p", "-n", namespace, "--type", "json",
                           "-p", '[{"op":"replace","path":"/spec/selector/matchLabels/app","value":"other"}]')
    assert "patched" in json_patched.stdout
    assert kubectl("get", "infpool", "p", "-n", namespace, "-o", "jsonpath={.spec.selector.matchLabels.app}").stdout \
        == "other"

    ssa = pool("s", labels="{owner: ssa}")
    first = kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=ssa)
    assert first.stdout.strip() == "inferencepool.inference.networking.k8s.io/s serverside-applied"
    second = kubectl("apply", "--server-side", "-n", namespace, "-f", "-",
                     input=ssa.replace("owner: ssa", "{}").replace("labels: {{}}", "labels: {}")
                     .replace("8000", "8100"))
    assert second.stdout.strip() == "inferencepool.inference.networking.k8s.io/s serverside-applied"
    obj = kubectl("get", "infpool", "s", "-n", namespace, "-o", "json", "--show-managed-fields").json()
    assert obj["spec"]["targetPorts"] == [{"number": 8100}]
    assert [m["manager"] for m in obj["metadata"]["managedFields"]] == ["kubectl"]
    assert obj["metadata"]["managedFields"][0]["operation"] == "Apply"


def test_watch_prints_rows_as_objects_change(upstream_crds, kubectl, namespace, kubectl_bin) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=pool("w1"))
    proc = subprocess.Popen([kubectl_bin, "get", "infpool", "-n", namespace, "-w"], env=kubectl.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.split() == ["NAME", "AGE"]
        assert proc.stdout.readline().split()[0] == "w1"
        kubectl("apply", "-n", namespace, "-f", "-", input=pool("w2"))
        assert proc.stdout.readline().split()[0] == "w2"
        kubectl("delete", "infpool", "w1", "-n", namespace)
        assert proc.stdout.readline().split()[0] == "w1"
        assert proc.poll() is None, "kubectl get -w must keep watching"
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_describe_custom_resource(upstream_crds, kubectl, namespace, http) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=GATEWAY)
    set_gateway_status(http, namespace, "10.9.8.7")
    text = kubectl("describe", "gateway", "inference-gateway", "-n", namespace).stdout
    assert re.search(r"^Name:\s+inference-gateway$", text, re.M)
    assert re.search(rf"^Namespace:\s+{namespace}$", text, re.M)
    assert re.search(r"^Labels:\s+tier=edge$", text, re.M)
    assert re.search(r"^Kind:\s+Gateway$", text, re.M)
    assert re.search(r"Gateway Class Name:\s+gke-l7-regional-external-managed", text)
    assert re.search(r"Value:\s+10\.9\.8\.7", text)
    assert re.search(r"^Events:\s+<none>", text, re.M)


def test_api_resources_lists_crd_kinds_with_short_names(upstream_crds, kubectl) -> None:
    table = rows(kubectl("api-resources").stdout)
    assert table[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["inferencepools", "infpool", "inference.networking.k8s.io/v1", "true", "InferencePool"] in table
    assert ["inferencepools", "xinfpool", "inference.networking.x-k8s.io/v1alpha2", "true", "InferencePool"] in table
    assert ["gateways", "gtw", "gateway.networking.k8s.io/v1", "true", "Gateway"] in table
    assert ["namespaces", "ns", "v1", "false", "Namespace"] in table
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in table
    groups = kubectl("api-resources", "--api-group=gateway.networking.k8s.io", "-o", "name").stdout.split()
    assert "gateways.gateway.networking.k8s.io" in groups and "httproutes.gateway.networking.k8s.io" in groups


def test_validation_errors_print_field_paths(upstream_crds, kubectl, namespace) -> None:
    bad = pool("bad").replace("number: 8000", "number: eighty")
    result = kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert result.returncode == 1
    assert 'The InferencePool "bad" is invalid' in result.stderr
    assert "spec.targetPorts[0].number: Invalid value" in result.stderr
    zero = kubectl("apply", "-n", namespace, "-f", "-", input=pool("zero", port=0), check=False)
    assert zero.returncode == 1
    assert zero.stderr.strip().endswith('The InferencePool "zero" is invalid: '
                                        "spec.targetPorts[0].number: Invalid value: 0: must be greater than or equal to 1")
    unknown = pool("bad").replace("  selector:", "  colour: blue\n  selector:")
    strict = kubectl("apply", "-n", namespace, "-f", "-", input=unknown, check=False)
    assert strict.returncode == 1
    assert 'unknown field "spec.colour"' in strict.stderr


def test_builtin_kinds_and_default_columns(kubectl, namespace) -> None:
    deployment = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sim
  namespace: {namespace}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: sim}}
  template:
    metadata:
      labels: {{app: sim}}
    spec:
      containers:
      - name: sim
        image: infergate/sim:latest
        ports: [{{containerPort: 8000}}]
---
apiVersion: v1
kind: Service
metadata:
  name: sim
  namespace: {namespace}
spec:
  selector: {{app: sim}}
  ports: [{{port: 80, targetPort: 8000}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: sim-0
  namespace: {namespace}
spec:
  containers: [{{name: sim, image: infergate/sim:latest}}]
"""
    out = kubectl("apply", "-f", "-", input=deployment).stdout
    assert "deployment.apps/sim created" in out and "service/sim created" in out and "pod/sim-0 created" in out
    deploy = rows(kubectl("get", "deploy", "-n", namespace, "-o", "wide").stdout)
    assert deploy[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert deploy[1][:4] == ["sim", "0/2", "0", "0"] and deploy[1][5:] == ["sim", "infergate/sim:latest", "app=sim"]
    svc = rows(kubectl("get", "svc", "-n", namespace).stdout)
    assert svc[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert svc[1][0] == "sim" and svc[1][1] == "ClusterIP" and svc[1][4] == "80/TCP"
    assert re.fullmatch(r"127\.96\.\d+\.\d+", svc[1][2]), svc  # a (loopback) cluster IP was allocated
    pods = rows(kubectl("get", "pods", "-n", namespace).stdout)
    assert pods[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert pods[1][:4] == ["sim-0", "0/1", "Pending", "0"]
    # client-side apply of a built-in kind again: a strategic merge patch
    changed = kubectl("apply", "-f", "-", input=deployment.replace("replicas: 2", "replicas: 3"))
    assert "deployment.apps/sim configured" in changed.stdout
    assert kubectl("get", "deploy", "sim", "-n", namespace, "-o", "jsonpath={.spec.replicas}").stdout == "3"
    scaled = kubectl("scale", "deploy", "sim", "-n", namespace, "--replicas=4")
    assert scaled.stdout.strip() == "deployment.apps/sim scaled"
    assert kubectl("get", "deploy", "sim", "-n", namespace, "-o", "jsonpath={.spec.replicas}").stdout == "4"
    everything = kubectl("get", "all", "-n", namespace, "-o", "name").stdout.split()
    assert everything == ["pod/sim-0", "service/sim", "deployment.apps/sim"]
    two_ports = deployment.split("---")[1].replace("ports: [{port: 80, targetPort: 8000}]",
                                                  "ports: [{name: http, port: 80}, {name: https, port: 443}]")
    kubectl("apply", "-f", "-", input=two_ports)
    assert rows(kubectl("get", "svc", "sim", "-n", namespace).stdout)[1][4] == "80/TCP,443/TCP"
    kubectl("apply", "-f", "-", input=two_ports.replace(", {name: https, port: 443}", ""))
    assert rows(kubectl("get", "svc", "sim", "-n", namespace).stdout)[1][4] == "80/TCP"
    cm = kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=mode=fast")
    assert cm.stdout.strip() == "configmap/settings created"
    assert rows(kubectl("get", "cm", "settings", "-n", namespace).stdout)[1][:2] == ["settings", "1"]


def test_delete_waits_for_finalizers(kubectl, namespace, http) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [infergate.io/hold]\n"))

    def release() -> None:
        time.sleep(1.0)
        http.patch(f"/api/v1/namespaces/{namespace}/configmaps/held", json={"metadata": {"finalizers": None}},
                   headers={"Content-Type": "application/merge-patch+json"})

    import threading

    releaser = threading.Thread(target=release)
    releaser.start()
    start = time.monotonic()
    try:
        deleted = kubectl("delete", "configmap", "held", "-n", namespace, "--timeout=20s", timeout=30)
    finally:
        releaser.join()
    assert deleted.stdout.strip() == f'configmap "held" deleted from {namespace} namespace'
    assert 0.9 < time.monotonic() - start < 15  # it waited (watch-list) until the finalizer was removed
    assert "No resources found" in kubectl("get", "cm", "-n", namespace).stderr


def test_namespace_deletion_deletes_its_objects(upstream_crds, kubectl) -> None:
    created = kubectl("create", "namespace", "doomed-ns")
    assert created.stdout.strip() == "namespace/doomed-ns created"
    kubectl("apply", "-n", "doomed-ns", "-f", "-", input=pool("p"))
    kubectl("create", "configmap", "c", "-n", "doomed-ns", "--from-literal=a=b")
    start = time.monotonic()
    deleted = kubectl("delete", "namespace", "doomed-ns", timeout=30)
    assert deleted.stdout.strip() == 'namespace "doomed-ns" deleted'
    assert time.monotonic() - start < 20
    assert "No resources found" in kubectl("get", "infpool", "-n", "doomed-ns").stderr
    gone = kubectl("get", "namespace", "doomed-ns", check=False)
    assert 'namespaces "doomed-ns" not found' in gone.stderr
    protected = kubectl("delete", "namespace", "default", check=False)
    assert "this namespace may not be deleted" in protected.stderr


def test_auth_can_i_answers_yes_without_authorization(kubectl) -> None:
    # no RBAC is enforced: the review says so instead of a 404
    assert kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "delete", "secrets", "-n", "kube-system").stdout.strip() == "yes"


def test_served_versions_share_one_object(upstream_crds, kubectl, namespace, http) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=GATEWAY)
    v1 = http.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/gateways/inference-gateway").json()
    beta = http.get(f"/apis/gateway.networking.k8s.io/v1beta1/namespaces/{namespace}/gateways/inference-gateway").json()
    assert v1["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert beta["apiVersion"] == "gateway.networking.k8s.io/v1beta1"
    assert beta["metadata"]["uid"] == v1["metadata"]["uid"] and beta["spec"] == v1["spec"]
    listed = kubectl("get", "gateways.v1beta1.gateway.networking.k8s.io", "-n", namespace, "-o", "json").json()
    assert [i["apiVersion"] for i in listed["items"]] == ["gateway.networking.k8s.io/v1beta1"]
    wrong_group = http.post(f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/gateways",
                            json={"apiVersion": "example.com/v1", "kind": "Gateway", "metadata": {"name": "x"}})
    assert wrong_group.status_code == 400
