"""Pure parts of the runtime: container matching, argv/env resolution, probes, addresses, statuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from infergate.apiserver.runtime.addresses import PodIPAllocator
from infergate.apiserver.runtime.pods import deployment_status
from infergate.apiserver.runtime.probes import _grpc_health_request, grpc_serving
from infergate.apiserver.runtime.spec import (
    DEFAULT_IMAGE_PREFIXES,
    PodIdentity,
    expand,
    launch_spec,
    local_container,
    readiness_probe,
    runs_locally,
    template_hash,
)

POD = PodIdentity(name="sim-abc", namespace="ns1", ip="127.3.0.7", uid="u1", labels={"app": "x"})


@pytest.mark.parametrize(("container", "expected"), [
    ({"image": "ghcr.io/infergate/infergate:v1", "args": ["epp", "--pool-name", "p"]}, True),
    ({"image": "ghcr.io/infergate/infergate@sha256:ab", "args": ["sim"]}, True),
    ({"image": "ghcr.io/infergate/infergate-other:v1", "args": ["epp"]}, False),
    ({"image": "vllm/vllm-openai:latest", "command": ["infergate", "sim"]}, True),
    ({"image": "python:3.11", "command": ["/venv/bin/infergate"], "args": ["sim"]}, True),
    ({"image": "python:3.11", "command": ["python3", "-m", "infergate", "sim"]}, True),
    ({"image": "vllm/vllm-openai:latest", "args": ["--model", "x"]}, False),
    ({"image": "ghcr.io/infergate/infergate:v1", "command": ["sh", "-c", "infergate sim"]}, False),
])
def test_runs_locally(container: dict[str, object], expected: bool) -> None:
    assert runs_locally(container, DEFAULT_IMAGE_PREFIXES) is expected


def test_local_container_picks_the_infergate_one() -> None:
    template = {"spec": {"containers": [{"name": "sidecar", "image": "busybox"},
                                        {"name": "epp", "image": "ghcr.io/infergate/infergate:1", "args": ["epp"]}]}}
    container = local_container(template, DEFAULT_IMAGE_PREFIXES)
    assert container is not None and container["name"] == "epp"
    assert local_container(template, ("example.com/other",)) is None


def test_expand_like_the_kubelet() -> None:
    env = {"A": "1", "POD_IP": "127.3.0.7"}
    assert expand("--address=$(POD_IP)", env) == "--address=127.3.0.7"
    assert expand("$(A)-$(MISSING)-$$(A)", env) == "1-$(MISSING)-$(A)"


def test_launch_spec_env_downward_api_configmap_and_mounts() -> None:
    container = {
        "name": "epp", "image": "ghcr.io/infergate/infergate:1",
        "command": ["infergate"],
        "args": ["epp", "--pool-name", "$(POOL)", "--config-file", "/config/plugins.yaml", "--x=/config/a"],
        "env": [
            {"name": "POOL", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "pool"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "BOTH", "value": "$(NAME)@$(IP)"},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
        ],
        "readinessProbe": {"grpc": {"port": 9003, "service": "inference-extension"}, "periodSeconds": 2},
    }
    spec = launch_spec({"spec": {"terminationGracePeriodSeconds": 7}}, container, POD,
                       {("ConfigMap", "cm", "pool"): "my-pool"}, {"/config": "/tmp/vol/config"})
    assert spec.argv == ("epp", "--pool-name", "my-pool", "--config-file", "/tmp/vol/config/plugins.yaml",
                         "--x=/tmp/vol/config/a")
    assert spec.env == {"POOL": "my-pool", "NAME": "sim-abc", "IP": "127.3.0.7", "APP": "x",
                        "BOTH": "sim-abc@127.3.0.7"}
    assert spec.grace_period_s == 7
    assert spec.probe is not None and spec.probe.kind == "grpc" and spec.probe.port == 9003
    assert spec.probe.service == "inference-extension" and spec.probe.period_s == 2


def test_launch_spec_errors_name_the_field() -> None:
    container = {"image": "ghcr.io/infergate/infergate:1", "args": ["sim"],
                 "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}
    with pytest.raises(ValueError, match=r"env\[0\]\.valueFrom: ConfigMap 'cm' has no key 'k'"):
        launch_spec({}, container, POD, {})


def test_readiness_probe_named_port() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8000}],
                 "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}}}
    probe = readiness_probe(container)
    assert probe is not None and (probe.kind, probe.port, probe.path) == ("http", 8000, "/health")
    with pytest.raises(ValueError, match="no container port named 'metrics'"):
        readiness_probe({"readinessProbe": {"tcpSocket": {"port": "metrics"}}})
    assert readiness_probe({"readinessProbe": {"exec": {"command": ["true"]}}}) is None


def test_template_hash_changes_with_the_template() -> None:
    a = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "args": ["1"]}]}}
    b = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "args": ["2"]}]}}
    assert template_hash(a) == template_hash(dict(a)) and len(template_hash(a)) == 10
    assert template_hash(a) != template_hash(b)


def test_grpc_health_encoding() -> None:
    assert _grpc_health_request("") == b""
    assert _grpc_health_request("inference-extension") == b"\x0a\x13inference-extension"
    assert grpc_serving(b"\x08\x01") and not grpc_serving(b"\x08\x02") and not grpc_serving(b"")


def test_allocator_is_stable_and_persistent(tmp_path: Path) -> None:
    state = tmp_path / "ips.json"
    alloc = PodIPAllocator("127.9.8.0/24", state)
    a, b = alloc.allocate("ns/a"), alloc.allocate("ns/b")
    assert a != b and a.startswith("127.9.8.") and not a.endswith((".0", ".255"))
    again = PodIPAllocator("127.9.8.0/24", state)
    assert again.allocate("ns/a") == a and again.allocate("ns/b") == b
    again.release("ns/a")
    assert PodIPAllocator("127.9.8.0/24", state).address_of("ns/a") is None
    fresh = PodIPAllocator("127.9.8.0/24")
    assert fresh.allocate("ns/a") == a  # same name, same address even without state
    assert fresh.allocate("ns/c", preferred="127.9.8.77") == "127.9.8.77"
    with pytest.raises(ValueError, match=r"not inside 127\.0\.0\.0/8"):
        PodIPAllocator("10.0.0.0/24")


def test_allocator_full() -> None:
    alloc = PodIPAllocator("127.9.9.0/30")
    got = {alloc.allocate(f"ns/p{i}") for i in range(2)}
    assert got == {"127.9.9.1", "127.9.9.2"}
    with pytest.raises(RuntimeError, match="full"):
        alloc.allocate("ns/p9")


def test_deployment_status_from_pods() -> None:
    deployment = {"metadata": {"name": "d", "generation": 4}, "spec": {"replicas": 3}}
    status = deployment_status(deployment, [("h", True), ("h", True), ("h", False)], "h", {}, "T1")
    assert status["observedGeneration"] == 4 and status["replicas"] == 3 and status["readyReplicas"] == 2
    available = {c["type"]: c for c in status["conditions"]}["Available"]
    assert available["status"] == "False" and available["reason"] == "MinimumReplicasUnavailable"
    done = deployment_status(deployment, [("h", True)] * 3, "h", status, "T2")
    cond = {c["type"]: c for c in done["conditions"]}
    assert cond["Available"]["status"] == "True" and cond["Available"]["lastTransitionTime"] == "T2"
    assert cond["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert "unavailableReplicas" not in done


def test_in_cluster_config_reads_the_service_account_dir_the_runtime_names(tmp_path: Path) -> None:
    """A local pod's in-cluster client (``infergate.kube.config``) reads the token/CA the runtime wrote."""
    from infergate.kube.config import in_cluster, load_config

    (tmp_path / "token").write_text("tok-123")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")  # parsed only when connecting
    (tmp_path / "namespace").write_text("team-a")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443",
           "INFERGATE_SERVICEACCOUNT_DIR": str(tmp_path)}
    for config in (in_cluster(environ=env), load_config(environ=env)):
        assert (config.server, config.token, config.ca_pem, config.namespace) == (
            "https://127.0.0.1:6443", "tok-123", b"-----BEGIN CERTIFICATE-----\n", "team-a")
    config = in_cluster(environ=env)
    assert config.token_source is not None and config.bearer_token() == "tok-123"  # re-read when it rotates


def test_log_runs_previous_tail_limit() -> None:
    from infergate.apiserver.runtime.logs import MARKER, select, split_runs

    data = MARKER + b"t0 starting\n" + b"a\nb\n" + MARKER + b"t1 starting\n" + b"c\nd\ne\n"
    assert split_runs(data) == [b"a\nb\n", b"c\nd\ne\n"]
    assert select(data, False, None, None) == b"c\nd\ne\n"
    assert select(data, True, None, None) == b"a\nb\n"
    assert select(data, False, 2, None) == b"d\ne\n"
    assert select(data, False, 0, None) == b""
    assert select(data, False, None, 3) == b"c\nd"
    assert select(MARKER + b"t0\n" + b"only\n", True, None, None) == b""
