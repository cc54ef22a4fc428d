"""Pods of several containers, the pure parts: which containers run, their status, wildcard
binds, and the Envoy sidecar's bootstrap on the pod's address."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infergate.apiserver.runtime.envoy_sidecar import is_local_address, pod_envoy_argv, rebind
from infergate.apiserver.runtime.pods import pod_status
from infergate.apiserver.runtime.process import ContainerState
from infergate.apiserver.runtime.spec import (
    DEFAULT_IMAGE_PREFIXES,
    ENVOY,
    INFERGATE,
    PodIdentity,
    bind_to_pod_ip,
    launch_spec,
    local_containers,
    program_of,
    skipped_containers,
)

IMAGE = "ghcr.io/infergate/infergate:1"
EPP = {"name": "epp", "image": IMAGE, "command": ["infergate", "epp"], "args": ["--host=0.0.0.0"]}
ENVOY_SIDECAR = {"name": "envoy", "image": IMAGE, "command": ["envoy"], "args": ["-c", "/etc/envoy/envoy.yaml"]}
POD = PodIdentity(name="p", namespace="ns", ip="127.3.0.9")


@pytest.mark.parametrize(("container", "program"), [
    (EPP, INFERGATE),
    (ENVOY_SIDECAR, ENVOY),
    ({"name": "e", "image": "envoyproxy/envoy:v1.33.0", "args": ["-c", "/x.yaml"]}, ENVOY),
    ({"name": "e", "image": "docker.io/envoyproxy/envoy@sha256:ab"}, ENVOY),
    ({"name": "e", "image": "envoyproxy/envoy:v1.33.0", "command": ["sh", "-c", "envoy"]}, None),
    ({"name": "b", "image": "busybox"}, None),
])
def test_program_of_a_container(container: dict[str, object], program: str | None) -> None:
    assert program_of(container, DEFAULT_IMAGE_PREFIXES) == program


def test_a_pod_runs_locally_for_its_infergate_container_then_with_its_envoy() -> None:
    busybox = {"name": "debug", "image": "busybox"}
    template = {"spec": {"containers": [EPP, busybox, ENVOY_SIDECAR]}}
    assert [c["name"] for c in local_containers(template, DEFAULT_IMAGE_PREFIXES)] == ["epp", "envoy"]
    assert skipped_containers(template, DEFAULT_IMAGE_PREFIXES) == ["debug"]
    assert local_containers({"spec": {"containers": [ENVOY_SIDECAR]}}, DEFAULT_IMAGE_PREFIXES) == []  # Envoy alone: stored only


@pytest.mark.parametrize(("arg", "expected"), [
    ("0.0.0.0", "127.3.0.9"), ("--host=0.0.0.0", "--host=127.3.0.9"), ("0.0.0.0:18000", "127.3.0.9:18000"),
    ("--xds-address=[::]:18000", "--xds-address=127.3.0.9:18000"), ("::", "127.3.0.9"),
    ("0.0.0.0/0", "0.0.0.0/0"), ("127.0.0.1:8000", "127.0.0.1:8000"), ("--port=0", "--port=0"),
])
def test_wildcard_listen_addresses_are_the_pod_ip(arg: str, expected: str) -> None:
    assert bind_to_pod_ip(arg, "127.3.0.9") == expected


def test_launch_spec_per_program() -> None:
    epp = launch_spec({}, EPP, POD, {})
    assert (epp.program, epp.container, epp.argv) == (INFERGATE, "epp", ("epp", "--host=127.3.0.9"))
    envoy = launch_spec({}, ENVOY_SIDECAR, POD, {}, {"/etc/envoy": "/local/envoy-config"}, program=ENVOY)
    assert (envoy.program, envoy.container, envoy.argv) == (ENVOY, "envoy", ("-c", "/local/envoy-config/envoy.yaml"))


def test_envoy_bootstrap_names_the_pod_address(tmp_path: Path) -> None:
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 19000}}},
        "static_resources": {
            "listeners": [{"name": "proxy", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8081,
                                                                              "ipv4_compat": True}}}],
            "clusters": [
                {"name": "ext_proc", "load_assignment": {"endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "localhost", "port_value": 9002}}}}]}]}},
                {"name": "upstream", "load_assignment": {"endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "10.1.2.3", "port_value": 80}}}}]}]}},
            ]}}
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump(bootstrap))
    argv = pod_envoy_argv(["-c", str(tmp_path / "envoy.yaml"), "--log-level", "warn"], "127.3.0.9", tmp_path / "w",
                          "envoy")
    assert argv == ["-c", str(tmp_path / "w" / "envoy-envoy.yaml"), "--log-level", "warn", "--disable-hot-restart"]
    rewritten = yaml.safe_load(Path(argv[1]).read_text())
    assert rewritten["admin"]["address"]["socket_address"]["address"] == "127.3.0.9"
    assert rewritten["static_resources"]["listeners"][0]["address"]["socket_address"] == {
        "address": "127.3.0.9", "port_value": 8081}
    clusters = rewritten["static_resources"]["clusters"]
    endpoint = clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == "127.3.0.9"  # the EPP next to it
    other = clusters[1]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert other["address"]["socket_address"]["address"] == "10.1.2.3"  # not the pod's own: unchanged
    assert yaml.safe_load((tmp_path / "envoy.yaml").read_text()) == bootstrap  # the volume itself is untouched
    assert pod_envoy_argv(["--config-path=" + str(tmp_path / "envoy.yaml"), "--disable-hot-restart"], "127.3.0.9",
                          tmp_path / "w", "e2") == ["--config-path=" + str(tmp_path / "w" / "envoy-e2.yaml"),
                                                    "--disable-hot-restart"]
    with pytest.raises(ValueError, match=r"containers\[envoy\]: Envoy configuration /nope.yaml"):
        pod_envoy_argv(["-c", "/nope.yaml"], "127.3.0.9", tmp_path, "envoy")
    assert [is_local_address(a) for a in ("::1", "[::]", "127.0.0.53", "127.3.0.9", "10.0.0.1", "example.com")] == [
        True, True, True, True, False, False]
    assert rebind({"a": [{"socket_address": {"address": "0.0.0.0"}}, {"pipe": {"path": "/x"}}]}, "127.3.0.9") == 1


def _state(ready: bool, running: bool = True, restarts: int = 0) -> ContainerState:
    return ContainerState(phase="Running" if running else "Pending", running_since="T0" if running else None,
                          waiting_reason=None if running else "ContainerCreating", ready=ready, started=running,
                          restart_count=restarts, pid=42 if running else None)


def test_pod_status_of_several_containers() -> None:
    epp, envoy = {"name": "epp", "image": IMAGE}, {"name": "envoy", "image": IMAGE}
    status = pod_status([(epp, _state(True)), (envoy, _state(False, restarts=2))], "127.3.0.9", "T0", "T1")
    assert status["phase"] == "Running"
    assert [(c["name"], c["ready"], c["restartCount"]) for c in status["containerStatuses"]] == [
        ("epp", True, 0), ("envoy", False, 2)]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == conditions["ContainersReady"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "ContainersNotReady"
    assert conditions["Ready"]["message"] == "containers with unready status: [envoy]"
    ready = pod_status([(epp, _state(True)), (envoy, _state(True))], "127.3.0.9", "T0", "T1")
    assert {c["type"]: c["status"] for c in ready["conditions"]}["Ready"] == "True"
    starting = pod_status([(epp, _state(True)), (envoy, _state(False, running=False))], "127.3.0.9", "T0", "T1")
    assert starting["phase"] == "Pending"
    assert starting["containerStatuses"][1]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert starting["containerStatuses"][1]["started"] is False


def test_pod_status_while_init_containers_run() -> None:
    main, first, second = {"name": "epp", "image": IMAGE}, {"name": "first"}, {"name": "second"}
    done = ContainerState(phase="Succeeded", completed=True, started_at="T0", last_exit_code=0,
                          last_finished_at="T1")
    waiting = ContainerState(waiting_reason="PodInitializing")
    status = pod_status([(main, waiting)], "127.3.0.9", "T0", "T0", [(first, done), (second, _state(False))])
    assert status["phase"] == "Pending"
    initialized = {c["type"]: c for c in status["conditions"]}["Initialized"]
    assert (initialized["status"], initialized["reason"], initialized["message"]) == (
        "False", "ContainersNotInitialized", "containers with incomplete status: [second]")
    assert status["initContainerStatuses"][0]["state"] == {"terminated": {
        "exitCode": 0, "reason": "Completed", "startedAt": "T0", "finishedAt": "T1"}}
    assert status["initContainerStatuses"][0]["ready"] is True
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    after = pod_status([(main, _state(True))], "127.3.0.9", "T0", "T2", [(first, done), (second, done)])
    assert after["phase"] == "Running"
    assert {c["type"]: c["status"] for c in after["conditions"]} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    assert "initContainerStatuses" not in pod_status([(main, _state(True))], "127.3.0.9", "T0", "T2")


def test_log_choices_as_the_api_server_lists_them() -> None:
    from infergate.apiserver.runtime.logs import PodLogFiles

    files = PodLogFiles({"epp": Path("a"), "envoy": Path("b")}, {"setup": Path("c")})
    assert files.choices() == "[epp envoy] or one of the init containers: [setup]"
    assert PodLogFiles({"epp": Path("a"), "envoy": Path("b")}).choices() == "[epp envoy]"
    assert (files.get("setup"), files.get("envoy"), files.get("nope")) == (Path("c"), Path("b"), None)
