"""The source document's commands, extracted from the document itself, run with bash against
a fresh `infergate up --gateway-class gke-l7-regional-external-managed`.

The only changes to the commands are the substitutions in `SUBSTITUTIONS` (release URLs ->
local CRD bundles, the OCI chart -> the chart folder, placeholders -> concrete values); each
must be used, so a stale entry fails. The document's starting point (the preview stack) is
set up first, then the simple path and the zero-downtime path run in the document's order,
each on its own `infergate up`. See docs/acceptance.md.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from httpx_sse import EventSource, SSEError

from infergate.seed import SeedBlock, extract_blocks, load_seed_document

from .conftest import GKE_CLASS, Cluster, wait_until

GH = "https://github.com/kubernetes-sigs/gateway-api-inference-extension"
OBJECTIVES_CRD = "{objectives_crd}"  # filled in per test: a tmp file with only that CRD
PROMPT = "Write as if you were a critic: San Francisco"
MODEL = "food-review"  # a LoRA adapter the simulators serve; InferenceModel/InferenceObjective food-review
SIM_TIME_SCALE = 10  # simulated accelerator 10x faster than real time (test duration only)


@dataclass(frozen=True)
class Substitution:
    original: str
    replacement: str
    reason: str


# The one table of changes made to the document's commands (docs/acceptance.md repeats it).
SUBSTITUTIONS: tuple[Substitution, ...] = (
    Substitution(f"{GH}/releases/download/v0.3.0/manifests.yaml", "config/crd/preview.yaml",
                 "no network: infergate's preview (v0.3.0) CRD bundle"),
    Substitution(f"{GH}/releases/download/v1.0.0/manifests.yaml", "config/crd/ga.yaml",
                 "no network: infergate's v1.0.0 CRD bundle (v1 InferencePool, v1alpha2 InferencePool and "
                 "InferenceObjective)"),
    Substitution(f"{GH}/raw/v1.0.0/config/crd/bases/inference.networking.x-k8s.io_inferenceobjectives.yaml",
                 OBJECTIVES_CRD, "no network: the InferenceObjective CRD alone, cut from `infergate crds --bundle ga`"),
    Substitution("oci://registry.k8s.io/gateway-api-inference-extension/charts/inferencepool",
                 "charts/inferencepool", "no registry: the chart folder"),
    Substitution("--version RELEASE", "--version 0.1.0", "placeholder RELEASE: the chart's version (Chart.yaml)"),
    Substitution("HELM_PREVIEW_INFERENCEPOOL_NAME", "vllm-llama3-8b-instruct-preview",
                 "placeholder: the preview release installed as the starting point"),
    Substitution("MODEL_SERVER_DEPLOYMENT_LABEL", "vllm-llama3-8b-instruct",
                 "placeholder: the simulators' app label (examples/sim-deployment.yaml)"),
    Substitution("<var>YOUR_MODEL</var>", MODEL, "placeholder (the web page's <var> markup)"),
    Substitution("<var>YOUR_PROMPT</var>", PROMPT, "placeholder (the web page's <var> markup)"),
    Substitution('"model": "YOUR_MODEL,', f'"model": "{MODEL}",',
                 "placeholder; DOCUMENT BUG: the closing quote after YOUR_MODEL is missing"),
    Substitution('"prompt": YOUR_PROMPT,', f'"prompt": "{PROMPT}",',
                 "placeholder; DOCUMENT BUG: the prompt string is not quoted"),
)

# The document's blocks, by position, with their first line as the document writes it.
EXPECTED_BLOCKS: dict[str, tuple[int, str]] = {
    "check_v1alpha2": (0, "kubectl get inferencepools.inference.networking.x-k8s.io --all-namespaces"),
    "helm_uninstall_preview": (1, "helm uninstall HELM_PREVIEW_INFERENCEPOOL_NAME"),
    "delete_v1alpha2_crds_simple": (2, f"kubectl delete -f {GH}/releases/download/v0.3.0/manifests.yaml"),
    "get_gateway_simple": (3, "kubectl get gateway -o wide"),
    "get_gateway_simple_output": (4, "NAME                CLASS                            ADDRESS        "
                                     "PROGRAMMED   AGE"),
    "curl_simple": (5, "IP=$(kubectl get gateway/inference-gateway -o jsonpath='{.status.addresses[0].value}')"),
    "get_pools_v1alpha2": (6, "kubectl get inferencepools.inference.networking.x-k8s.io"),
    "get_pools_v1": (7, "kubectl get inferencepools.inference.networking.k8s.io"),
    "get_infpool": (8, "kubectl get infpool"),
    "apply_v1_crds": (9, f"kubectl apply -f {GH}/releases/download/v1.0.0/manifests.yaml"),
    "apply_objectives_crd": (10, f"kubectl apply -f {GH}/raw/v1.0.0/config/crd/bases/"
                                 "inference.networking.x-k8s.io_inferenceobjectives.yaml"),
    "helm_install_ga": (11, "helm install vllm-llama3-8b-instruct-ga \\"),
    "apply_objectives": (12, "kubectl apply -f - <<EOF"),
    "route_50_50": (13, "kubectl apply -f - <<EOF"),
    "route_100": (14, "kubectl apply -f - <<EOF"),
    "get_gateway_final": (15, "kubectl get gateway -o wide"),
    "get_gateway_final_output": (16, "NAME                CLASS                              ADDRESS           "
                                     "PROGRAMMED   AGE"),
    "curl_final": (17, "IP=$(kubectl get gateway/inference-gateway -o jsonpath='{.status.addresses[0].value}')"),
    "delete_v1alpha2_crds_final": (18, f"kubectl delete -f {GH}/releases/download/v0.3.0/manifests.yaml"),
}


@dataclass(frozen=True)
class SeedCommands:
    """The document's blocks by name, commands with `SUBSTITUTIONS` applied."""

    raw: dict[str, SeedBlock]
    commands: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.commands[name]


def seed_commands(seed_dir: Path, objectives_crd: Path | None) -> SeedCommands:
    blocks = extract_blocks(load_seed_document(seed_dir))
    assert len(blocks) == len(EXPECTED_BLOCKS), [b.first_line for b in blocks]
    raw: dict[str, SeedBlock] = {}
    for name, (index, first_line) in EXPECTED_BLOCKS.items():
        assert blocks[index].first_line == first_line, (name, blocks[index])
        raw[name] = blocks[index]
    used: Counter[str] = Counter()
    commands: dict[str, str] = {}
    for name, block in raw.items():
        text = block.text
        if block.kind == "command":
            for sub in SUBSTITUTIONS:
                used[sub.original] += text.count(sub.original)
                replacement = sub.replacement
                if replacement == OBJECTIVES_CRD:
                    replacement = str(objectives_crd)
                text = text.replace(sub.original, replacement)
        commands[name] = text
    unused = [s.original for s in SUBSTITUTIONS if not used[s.original]]
    assert not unused, f"substitutions that no command of the document needs any more: {unused}"
    return SeedCommands(raw, commands)


def write_objectives_crd(cluster: Cluster, directory: Path) -> Path:
    """The InferenceObjective CRD alone, as upstream's config/crd/bases file has it."""
    bundle = cluster.bash("infergate crds --bundle ga", quiet=True).stdout
    (crd,) = [d for d in yaml.safe_load_all(bundle)
              if d and d["metadata"]["name"] == "inferenceobjectives.inference.networking.x-k8s.io"]
    path = directory / "inference.networking.x-k8s.io_inferenceobjectives.yaml"
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return path


# ---------------------------------------------------------------- the document's starting point

PREVIEW_GATEWAY = f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: inference-gateway
spec:
  gatewayClassName: {GKE_CLASS}
  listeners:
  - name: http
    protocol: HTTP
    port: 80
"""


def ready_pods(cluster: Cluster, prefix: str) -> list[str]:
    items = cluster.kubectl_json("get", "pods")["items"]
    assert isinstance(items, list)
    return [p["metadata"]["name"] for p in items if p["metadata"]["name"].startswith(prefix)
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def route_programmed(cluster: Cluster, pools: set[str]) -> bool:
    """llm-route's status for this generation: Accepted and ResolvedRefs, naming exactly ``pools``.

    The gateway writes route statuses only after Envoy acknowledged the configuration: Envoy
    has the route. (Whether the pool's EPP is already in service is another matter: see
    test_simple_migration_path.)
    """
    route = cluster.kubectl_json("get", "httproute", "llm-route")
    spec_pools = {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]}
    generation = route["metadata"]["generation"]
    parents = route.get("status", {}).get("parents", [])
    conditions = {c["type"]: c for p in parents for c in p["conditions"]}
    return (spec_pools == pools and all(conditions.get(t, {}).get("status") == "True"
                                        and conditions[t].get("observedGeneration") == generation
                                        for t in ("Accepted", "ResolvedRefs")))


def pool_accepted(cluster: Cluster, resource: str, field: str) -> bool:
    parents = cluster.kubectl_json("get", resource).get("status", {}).get(field) or []
    return any(p.get("parentRef", {}).get("name") == "inference-gateway"
               and {c["type"]: c["status"] for c in p.get("conditions", [])}.get("Accepted") == "True"
               and {c["type"]: c["status"] for c in p.get("conditions", [])}.get("ResolvedRefs") == "True"
               for p in parents)


def install_preview_stack(cluster: Cluster) -> None:
    """The preview (v1alpha2) installation the document migrates from (not in the document)."""
    cluster.note("the starting point (not in the document): the preview stack")
    sim = (cluster.repo_root / "examples" / "sim-deployment.yaml").read_text()
    assert "app: vllm-llama3-8b-instruct" in sim and "- --max-loras=4" in sim
    sim = sim.replace("replicas: 3", "replicas: 2").replace(
        "- --max-loras=4", f"- --max-loras=4\n        - --time-scale={SIM_TIME_SCALE}")
    cluster.bash("kubectl apply -f config/crd/preview.yaml")
    cluster.bash(f"kubectl apply -f - <<'EOF'\n{sim}EOF\n")
    cluster.bash("helm install vllm-llama3-8b-instruct-preview "
                 "--set inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct "
                 "--set inferencePool.apiVersion=inference.networking.x-k8s.io/v1alpha2 "
                 "--set provider.name=gke charts/inferencepool")
    cluster.bash("kubectl apply -f examples/demo/preview/models.yaml")
    cluster.bash(f"kubectl apply -f - <<'EOF'\n{PREVIEW_GATEWAY}EOF\n")
    cluster.bash("kubectl apply -f examples/demo/routes/preview.yaml")
    wait_until(lambda: len(ready_pods(cluster, "vllm-llama3-8b-instruct-")) == 3, 60,
               "2 simulator pods and the preview EPP Ready")
    wait_until(lambda: route_programmed(cluster, {"vllm-llama3-8b-instruct-preview"}), 30, "llm-route programmed")
    address = gateway_address(cluster)
    served = completion(address)
    assert served.status_code == 200, served.text
    assert served.json()["model"] in {"food-review-1", "food-review-2"}  # the preview InferenceModel's canary


def gateway_address(cluster: Cluster) -> str:
    address: str = cluster.bash("kubectl get gateway/inference-gateway -o jsonpath='{.status.addresses[0].value}'",
                                quiet=True).stdout
    return address


def serves(address: str, model: str) -> bool:
    """One completion through the gateway answers 200 from ``model`` (a probe, no assertion)."""
    try:
        response = completion(address, timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("model") == model


def completion(address: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"http://{address}:80/v1/completions", timeout=timeout,
                      json={"model": MODEL, "prompt": PROMPT, "max_tokens": 10, "temperature": 0})


# ---------------------------------------------------------------- checks of the document's outputs

def check_v1alpha2_in_use(cluster: Cluster, commands: SeedCommands) -> None:
    out = cluster.bash(commands["check_v1alpha2"]).stdout
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"], out
    rows = [line.split() for line in lines if line.startswith("default ")]
    assert ["default", "vllm-llama3-8b-instruct-preview"] in [r[:2] for r in rows], out
    assert {"base-model", "food-review"} <= {r[1] for r in rows}, out  # the InferenceModels


def check_gateway_wide(cluster: Cluster, commands: SeedCommands, command: str, sample: str) -> None:
    """`kubectl get gateway -o wide` has the document's columns and values (but <IP_ADDRESS> and AGE)."""
    out = cluster.bash(commands[command]).stdout
    header, *rows = out.splitlines()
    doc_header, doc_row = commands[sample].splitlines()
    assert header.split() == doc_header.split() == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"], out
    assert len(rows) == 1, out
    name, cls, address, programmed, _age = rows[0].split()
    doc_name, doc_cls, doc_address, doc_programmed, _doc_age = doc_row.split()
    assert (name, cls, programmed) == (doc_name, doc_cls, doc_programmed) == (
        "inference-gateway", GKE_CLASS, "True"), out
    assert doc_address == "<IP_ADDRESS>" and re.fullmatch(r"127\.\d+\.\d+\.\d+", address), out
    assert address == gateway_address(cluster)


def check_curl(cluster: Cluster, commands: SeedCommands, command: str, pool_model: str) -> None:
    """The document's IP=/PORT=/curl -i lines: HTTP/1.1 200 and a completion of ``pool_model``."""
    out = cluster.bash(commands[command], timeout=60).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    assert head.splitlines()[0] == "HTTP/1.1 200 OK", out
    answer = json.loads(body)
    assert answer["object"] == "text_completion" and answer["model"] == pool_model, out
    assert answer["choices"][0]["text"] and answer["usage"]["completion_tokens"] > 0, out


def check_helm_install_ga(cluster: Cluster, commands: SeedCommands) -> None:
    out = cluster.bash(commands["helm_install_ga"], timeout=120).stdout
    assert "NAME: vllm-llama3-8b-instruct-ga" in out and "STATUS: deployed" in out, out
    # helm ignores --version for a chart folder; the release is the chart's version all the same
    releases = json.loads(cluster.bash("helm list -o json", quiet=True).stdout)
    assert {r["name"]: r["chart"] for r in releases}["vllm-llama3-8b-instruct-ga"] == "inferencepool-0.1.0", releases


def wait_ga_ready(cluster: Cluster) -> None:
    cluster.bash("kubectl rollout status deployment/vllm-llama3-8b-instruct-ga-epp --timeout=60s", timeout=70,
                 quiet=True)


# ---------------------------------------------------------------- tests

def test_extraction_and_document_bugs(seed_dir: Path, tmp_path: Path, repo_root: Path) -> None:
    """Every command block is found and substituted; the second curl's JSON is really broken as written."""
    commands = seed_commands(seed_dir, tmp_path / "objectives.yaml")
    for sub in SUBSTITUTIONS:
        if sub.replacement.startswith(("config/", "charts/")):
            assert (repo_root / sub.replacement).exists(), sub
    for name, block in commands.raw.items():
        if block.kind == "command":
            assert "https://" not in commands[name] and "oci://" not in commands[name], commands[name]
            assert not re.search(r"YOUR_|<var>|RELEASE\b|_NAME\b|_LABEL\b", commands[name]), commands[name]
    assert commands["apply_objectives"].endswith("\nEOF\n")  # the here-document ends in column 0
    assert "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective" in commands[
        "apply_objectives"]

    def json_payload(script: str) -> str:
        match = re.search(r"-d '(.*?)'", script, re.S)
        assert match, script
        return match.group(1)

    # the first curl's body is valid JSON once its placeholders are filled
    assert json.loads(json_payload(commands["curl_simple"]))["model"] == MODEL
    # the second one is not, with the placeholders replaced by any value: a document bug
    broken = json_payload(commands.raw["curl_final"].text).replace("YOUR_MODEL", MODEL).replace("YOUR_PROMPT", "x")
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken)
    fixed = json.loads(json_payload(commands["curl_final"]))
    assert fixed == {"model": MODEL, "prompt": PROMPT, "max_tokens": 100, "temperature": 0}


@pytest.mark.timeout(240)
@pytest.mark.e2e
@pytest.mark.xdist_group("acceptance")
def test_simple_migration_path(cluster: Cluster, seed_dir: Path, tmp_path: Path) -> None:
    commands = seed_commands(seed_dir, write_objectives_crd(cluster, tmp_path))
    install_preview_stack(cluster)
    cluster.note("the document: 始める前に, then シンプルな移行 (with a background load: the downtime)")
    load = BackgroundLoad(gateway_address(cluster), workers=2)
    load.start()
    try:
        run_simple(cluster, commands, load)
    finally:
        load.stop()
    cluster.note(f"background load: {load.sent} requests, {len(load.failures)} failed within "
                 f"{load.failure_window_s():.1f}s, models {dict(load.models)}")
    # the downtime is where the document says: from the deletion until the new stack serves, not after
    assert load.failures_in("start", "v1 serving") == [], load.failures_in("start", "v1 serving")[:5]
    assert load.failures_in("deleting"), "no request failed while no pool served: was the load running?"
    assert load.models_since("v1 serving") == {MODEL}, load.counts_since("v1 serving")
    assert load.counts_since("v1 serving")[MODEL] >= 10, load.counts_since("v1 serving")


def run_simple(cluster: Cluster, commands: SeedCommands, load: BackgroundLoad) -> None:
    # 始める前に: the check finds v1alpha2 resources, so the migration is needed
    check_v1alpha2_in_use(cluster, commands)
    load.mark("deleting")

    # 1. delete the v1alpha2 resources (option 1: helm), then the v1alpha2 CRDs
    out = cluster.bash(commands["helm_uninstall_preview"]).stdout
    assert out.strip() == 'release "vllm-llama3-8b-instruct-preview" uninstalled', out
    out = cluster.bash(commands["delete_v1alpha2_crds_simple"]).stdout
    assert "customresourcedefinition.apiextensions.k8s.io \"inferencepools.inference.networking.x-k8s.io\" " \
           "deleted" in out and "\"inferencemodels.inference.networking.x-k8s.io\" deleted" in out, out

    # 2. install v1: CRDs, the GA pool with helm, InferenceObjectives, an HTTPRoute to the v1 pool
    #    (the document gives no commands here; these are its zero-downtime path's)
    out = cluster.bash(commands["apply_v1_crds"]).stdout
    assert "inferencepools.inference.networking.k8s.io created" in out, out
    assert "inferenceobjectives.inference.networking.x-k8s.io created" in out, out
    check_helm_install_ga(cluster, commands)
    out = cluster.bash(commands["apply_objectives"]).stdout
    assert out.splitlines() == ["inferenceobjective.inference.networking.x-k8s.io/food-review created",
                                "inferenceobjective.inference.networking.x-k8s.io/base-model created"], out
    out = cluster.bash(commands["route_100"]).stdout
    assert out.strip() == "httproute.gateway.networking.k8s.io/llm-route configured", out

    # 3. verify, once the new stack is live ("数分後": here, bounded waits on its statuses)
    wait_ga_ready(cluster)
    wait_until(lambda: route_programmed(cluster, {"vllm-llama3-8b-instruct-ga"}), 30, "llm-route to the v1 pool")
    # The route reached Envoy while the new EPP was still starting (fail-close: 503); once the EPP
    # is Ready the gateway still needs its endpoint and a passing TCP health check before using it
    # (the document's "数分後"): probe until it serves, then the document's checks.
    load.mark("v1 routed")
    started = time.monotonic()
    wait_until(lambda: serves(gateway_address(cluster), MODEL), 20, "the gateway answering from the v1 pool")
    load.mark("v1 serving")
    cluster.note(f"the gateway served the v1 pool {time.monotonic() - started:.1f}s after its EPP was rolled out")
    check_gateway_wide(cluster, commands, "get_gateway_simple", "get_gateway_simple_output")
    check_curl(cluster, commands, "curl_simple", pool_model=MODEL)  # the GA pool passes the model through

    # the starting check afterwards: no v1alpha2 pool; the InferenceModel kind is gone with v0.3.0's CRDs
    after = cluster.bash(commands["check_v1alpha2"], check=False)
    assert after.returncode != 0
    assert "No resources found" in after.stderr, after.output
    assert 'the server doesn\'t have a resource type "inferencemodels"' in after.stderr, after.output


@pytest.mark.timeout(300)
@pytest.mark.e2e
@pytest.mark.xdist_group("acceptance")
def test_zero_downtime_migration_path(cluster: Cluster, seed_dir: Path, tmp_path: Path) -> None:
    commands = seed_commands(seed_dir, write_objectives_crd(cluster, tmp_path))
    install_preview_stack(cluster)
    cluster.note("the document: 始める前に, then ゼロ ダウンタイムでの移行 (with a background load throughout)")
    check_v1alpha2_in_use(cluster, commands)
    address = gateway_address(cluster)
    load = BackgroundLoad(address)
    load.start()
    try:
        run_zero_downtime(cluster, commands, address, load)
    finally:
        load.stop()
    assert load.sent >= 100, load.sent
    assert load.failures == [], f"{len(load.failures)} of {load.sent} requests failed: {load.failures[:5]}"
    assert load.models["food-review"] > 0 and load.models["food-review-1"] + load.models["food-review-2"] > 0


def run_zero_downtime(cluster: Cluster, commands: SeedCommands, address: str, load: BackgroundLoad) -> None:
    # The document shows the v1 queries before stage 1; there (no v1 CRD yet, as on GKE < 1.34) they fail
    for name in ("get_pools_v1", "get_infpool"):
        early = cluster.bash(commands[name], check=False)
        assert early.returncode == 1 and "the server doesn't have a resource type" in early.stderr, early.output
    # ステージ 1: v1 side by side
    out = cluster.bash(commands["apply_v1_crds"]).stdout
    assert "inferencepools.inference.networking.k8s.io created" in out, out
    assert "inferenceobjectives.inference.networking.x-k8s.io created" in out, out
    out = cluster.bash(commands["apply_objectives_crd"]).stdout  # the GKE >= 1.34 variant, on top: no change
    assert out.strip() == ("customresourcedefinition.apiextensions.k8s.io/"
                           "inferenceobjectives.inference.networking.x-k8s.io unchanged"), out
    check_helm_install_ga(cluster, commands)
    out = cluster.bash(commands["apply_objectives"]).stdout
    assert out.splitlines() == ["inferenceobjective.inference.networking.x-k8s.io/food-review created",
                                "inferenceobjective.inference.networking.x-k8s.io/base-model created"], out
    wait_ga_ready(cluster)

    # kubectl を使用して API バージョンを区別する: each full name lists its own generation's pool
    v1alpha2 = cluster.bash(commands["get_pools_v1alpha2"]).stdout
    v1 = cluster.bash(commands["get_pools_v1"]).stdout
    infpool = cluster.bash(commands["get_infpool"]).stdout
    assert [line.split()[0] for line in v1alpha2.splitlines()] == ["NAME", "vllm-llama3-8b-instruct-preview"], v1alpha2
    assert [line.split()[0] for line in v1.splitlines()] == ["NAME", "vllm-llama3-8b-instruct-ga"], v1
    assert infpool == v1 or [line.split()[0] for line in infpool.splitlines()] == [
        "NAME", "vllm-llama3-8b-instruct-ga"], infpool

    # ステージ 2: 50/50
    out = cluster.bash(commands["route_50_50"]).stdout
    assert out.strip() == "httproute.gateway.networking.k8s.io/llm-route configured", out
    wait_until(lambda: route_programmed(cluster, {"vllm-llama3-8b-instruct-preview", "vllm-llama3-8b-instruct-ga"}),
               30, "llm-route split 50/50")
    check_gateway_wide(cluster, commands, "get_gateway_final", "get_gateway_final_output")  # PROGRAMMED True
    # 検証とモニタリング: each pool accepted by the Gateway (v1: status.parents, v1alpha2: status.parent)
    for resource, field in (("inferencepools.inference.networking.x-k8s.io/vllm-llama3-8b-instruct-preview", "parent"),
                            ("inferencepools.inference.networking.k8s.io/vllm-llama3-8b-instruct-ga", "parents")):
        wait_until(lambda r=resource, f=field: pool_accepted(cluster, r, f), 20, f"{resource} Accepted")
    shares = split_shares(address, 200)
    assert set(shares) == {"preview", "ga"}, shares
    assert all(70 <= count <= 130 for count in shares.values()), f"50/50 split over 200 requests: {shares}"

    # ステージ 3: 100% to v1, verify
    out = cluster.bash(commands["route_100"]).stdout
    assert out.strip() == "httproute.gateway.networking.k8s.io/llm-route configured", out
    wait_until(lambda: route_programmed(cluster, {"vllm-llama3-8b-instruct-ga"}), 30, "llm-route 100% v1")
    load.mark("after 100%")
    check_gateway_wide(cluster, commands, "get_gateway_final", "get_gateway_final_output")
    check_curl(cluster, commands, "curl_final", pool_model=MODEL)
    assert split_shares(address, 20) == {"ga": 20}

    # 3. clean up the v1alpha2 resources (no command in the document: the simple path's helm
    #    uninstall, and the InferenceModels, which helm did not install)
    out = cluster.bash(commands["helm_uninstall_preview"]).stdout
    assert out.strip() == 'release "vllm-llama3-8b-instruct-preview" uninstalled', out
    out = cluster.bash("kubectl delete inferencemodels.inference.networking.x-k8s.io --all").stdout
    assert "base-model" in out and "food-review" in out, out
    # 4. the remaining-v1alpha2 check: nothing left
    after = cluster.bash(commands["check_v1alpha2"])
    assert after.stdout == "" and after.stderr.splitlines() == ["No resources found", "No resources found"], \
        after.output
    # 5. delete the v1alpha2 CRDs
    out = cluster.bash(commands["delete_v1alpha2_crds_final"]).stdout
    assert "\"inferencepools.inference.networking.x-k8s.io\" deleted" in out and \
           "\"inferencemodels.inference.networking.x-k8s.io\" deleted" in out, out
    # the v1 stack keeps serving after the CRD deletion; the objectives (v1.0.0's CRD) remain
    check_curl(cluster, commands, "curl_final", pool_model=MODEL)
    objectives = cluster.bash("kubectl get inferenceobjectives.inference.networking.x-k8s.io -o name").stdout
    assert objectives.split() == ["inferenceobjective.inference.networking.x-k8s.io/base-model",
                                  "inferenceobjective.inference.networking.x-k8s.io/food-review"], objectives
    load.mark("end")
    cluster.note(f"background load: {load.sent} requests, {len(load.failures)} failed, models {dict(load.models)}")
    assert load.models_since("after 100%") == {"food-review"}, load.counts_since("after 100%")


def split_shares(address: str, count: int) -> dict[str, int]:
    """Which pool answered: the preview pool's InferenceModel rewrites food-review to its canary
    adapters (food-review-1/-2); the GA pool passes the model through."""
    shares: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            response = client.post(f"http://{address}:80/v1/completions",
                                   json={"model": MODEL, "prompt": PROMPT, "max_tokens": 3})
            assert response.status_code == 200, response.text
            model = response.json()["model"]
            shares["ga" if model == MODEL else "preview" if model in {"food-review-1", "food-review-2"} else model] += 1
    return dict(shares)


class BackgroundLoad:
    """Streaming completions through the gateway from ``workers`` clients, for the whole migration.

    Each request is recorded with the phase (``mark``) it started in; a request fails when its
    status is not 200 or its stream does not end with ``data: [DONE]``.
    """

    def __init__(self, address: str, workers: int = 3, max_tokens: int = 16) -> None:
        self.address = address
        self.max_tokens = max_tokens
        self.sent = 0
        self.failures: list[str] = []
        self.failure_log: list[tuple[int, float, str]] = []  # (phase index, monotonic time, what)
        self.models: Counter[str] = Counter()
        self._phases = ["start"]
        self._log: list[tuple[int, str]] = []  # (phase index, model)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"seed-load-{i}", daemon=True)
                         for i in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)

    def mark(self, name: str) -> None:
        with self._lock:
            self._phases.append(name)

    def counts_since(self, mark: str) -> dict[str, int]:
        """Models that answered requests started in phase ``mark`` or later."""
        with self._lock:
            first = self._phases.index(mark)
            return dict(Counter(model for phase, model in self._log if phase >= first))

    def models_since(self, mark: str) -> set[str]:
        return set(self.counts_since(mark))

    def failures_in(self, *marks: str) -> list[str]:
        with self._lock:
            phases = {self._phases.index(mark) for mark in marks}
            return [f"{self._phases[phase]}: {what}" for phase, _, what in self.failure_log if phase in phases]

    def failure_window_s(self) -> float:
        """Seconds from the first to the last failed request (0 without failures)."""
        times = [when for _, when, _ in self.failure_log]
        return max(times) - min(times) if times else 0.0

    def _failed(self, phase: int, what: str) -> None:
        with self._lock:
            self.failures.append(what)
            self.failure_log.append((phase, time.monotonic(), what))

    def _run(self) -> None:
        body = {"model": MODEL, "prompt": PROMPT, "max_tokens": self.max_tokens, "stream": True}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                with self._lock:
                    self.sent += 1
                    phase = len(self._phases) - 1  # the phase the request started in
                try:
                    with client.stream("POST", f"http://{self.address}:80/v1/completions", json=body) as response:
                        events = [e.data for e in EventSource(response).iter_sse()] \
                            if response.status_code == 200 else []
                    models = [json.loads(data)["model"] for data in events if data != "[DONE]"]
                    if response.status_code != 200 or not models or events[-1] != "[DONE]":
                        self._failed(phase, f"{response.status_code} {response.headers} {events[-3:]}")
                    else:
                        with self._lock:
                            self.models[models[0]] += 1
                            self._log.append((phase, models[0]))
                except (httpx.HTTPError, SSEError) as error:
                    self._failed(phase, repr(error))
                self._stop.wait(0.02)
