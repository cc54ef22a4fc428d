"""charts/standalone: the EPP and an Envoy sidecar in one pod, and its InferencePool (no
Gateway API). `helm template`/`lint` checked object by object; the EPP's arguments parsed by
the real `infergate epp`; the sidecar's Envoy configuration validated by the real Envoy, and
then run: the rendered envoy.yaml and the EPP (its pool from a static file instead of the
Kubernetes API) route a request to the pod the EPP picks and report back the endpoint that
served it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infergate.api import headers, validate
from infergate.bench.topology import ManagedProcess, python_argv
from infergate.cli.epp import command as epp_command
from infergate.util.net import free_port

from ..dataplane.support import EchoServers
from ..support.eventually import async_eventually
from .chartkit import CHARTS, Helm, by_kind, materialize, one, parse_cli

CHART = CHARTS / "standalone"
VERIFIER_CONFIG = """apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: destination-endpoint-served-verifier
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
"""
APP = {"inferencePool": {"modelServers": {"matchLabels": {"app": "vllm"}}}}


def _values(**extension: Any) -> dict[str, Any]:
    return {**APP, "inferenceExtension": extension} if extension else dict(APP)


def _epp_only(deployment: dict[str, Any]) -> dict[str, Any]:
    """The Deployment with only the EPP container and its volumes (what ``materialize`` takes)."""
    spec = deployment["spec"]["template"]["spec"]
    epp = spec["containers"][0]
    mounted = {m["name"] for m in epp["volumeMounts"]}
    pod = {**spec, "containers": [epp], "volumes": [v for v in spec["volumes"] if v["name"] in mounted]}
    return {**deployment, "spec": {**deployment["spec"], "template": {**deployment["spec"]["template"], "spec": pod}}}


def test_renders_a_pool_an_epp_and_its_envoy_sidecar(helm: Helm, tmp_path: Path, envoy_bin: str) -> None:
    objects = helm.template(CHART, _values(flags={"v": 2, "flow-control": True}), release="qwen", namespace="ml")
    kinds = by_kind(objects)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "InferencePool", "Role", "RoleBinding", "Service",
                             "ServiceAccount"]
    assert len(kinds["ConfigMap"]) == 2
    assert {o["metadata"]["namespace"] for o in objects} == {"ml"}
    pool = one(objects, "InferencePool")
    assert pool["spec"] == {"targetPorts": [{"number": 8000}], "selector": {"matchLabels": {"app": "vllm"}},
                            "endpointPickerRef": {"name": "qwen-epp", "port": {"number": 9002}}}
    assert validate(pool) == []
    deployment = one(objects, "Deployment")
    epp, envoy = deployment["spec"]["template"]["spec"]["containers"]
    assert (epp["name"], envoy["name"]) == ("epp", "envoy")
    assert envoy["image"] == epp["image"] and envoy["command"] == ["envoy"]  # the image ships Envoy
    options = parse_cli(epp_command, materialize(_epp_only(deployment), objects, tmp_path))
    assert (options["pool_name"], options["pool_namespace"], options["pool_group"]) == (
        "qwen", "ml", "inference.networking.k8s.io")
    assert (options["grpc_port"], options["verbosity"], options["flow_control"]) == (9002, 2, True)
    service = one(objects, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "http": 8081, "grpc-ext-proc": 9002, "http-metrics": 9090}
    role = one(objects, "Role")
    assert {g for rule in role["rules"] for g in rule["apiGroups"]} == {
        "inference.networking.k8s.io", "inference.networking.x-k8s.io", "llm-d.ai", ""}
    # the Envoy configuration is valid for the real Envoy
    (envoy_map,) = [o for o in kinds["ConfigMap"] if o["metadata"]["name"] == "qwen-epp-envoy"]
    config = tmp_path / "envoy.yaml"
    config.write_text(envoy_map["data"]["envoy.yaml"])
    check = subprocess.run([envoy_bin, "--mode", "validate", "-c", str(config)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    lint = helm.run("lint", str(CHART), "--set", "inferencePool.modelServers.matchLabels.app=vllm", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_without_sidecar_and_with_your_own_envoy_config(helm: Helm) -> None:
    objects = helm.template(CHART, _values(sidecar={"enabled": False}))
    assert [c["name"] for c in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]] == ["epp"]
    assert len(by_kind(objects)["ConfigMap"]) == 1
    assert "http" not in {p["name"] for p in one(objects, "Service")["spec"]["ports"]}
    objects = helm.template(CHART, _values(sidecar={"configMap": {"data": {"envoy.yaml": "admin: {}\n"}}}))
    (envoy_map,) = [o for o in by_kind(objects)["ConfigMap"] if o["metadata"]["name"].endswith("-envoy")]
    assert envoy_map["data"] == {"envoy.yaml": "admin: {}\n"}


@pytest.mark.parametrize(("values", "message"), [
    ({"inferencePool": {"modelServers": {"matchLabels": {}}}}, "inferencePool.modelServers.matchLabels: required"),
    ({**APP, "inferenceExtension": {"endpointsServer": {"createInferencePool": False}}},
     "inferenceExtension.endpointsServer.createInferencePool: false is not supported"),
    ({"inferencePool": {**APP["inferencePool"], "apiVersion": "inference.networking.x-k8s.io/v1alpha2"}},
     "the standalone chart creates a GA pool"),
    ({**APP, "inferenceExtension": {"sidecar": {"proxyPort": 9002}}},
     "port 9002 is also inferenceExtension.extProcPort"),
    ({**APP, "inferenceExtension": {"flags": {"grpc-port": 1}}}, "inferenceExtension.flags.grpc-port: --grpc-port is set by the chart"),
])
def test_contradicting_values_fail_with_the_field(helm: Helm, values: dict[str, Any], message: str) -> None:
    with pytest.raises(AssertionError) as failure:
        helm.template(CHART, values)
    assert message in str(failure.value)


@pytest.mark.e2e
async def test_the_rendered_sidecar_routes_to_the_epps_pick(helm: Helm, tmp_path: Path, envoy_bin: str) -> None:
    ports = {name: free_port() for name in ("extProcPort", "healthCheckPort", "metricsPort")}
    sidecar = {"proxyPort": free_port(), "adminPort": free_port(), "readyPort": free_port()}
    servers = EchoServers(2)
    plugins = {"served.yaml": VERIFIER_CONFIG}  # the default scorers + the served-endpoint test plugin
    objects = helm.template(CHART, _values(**ports, sidecar=sidecar, flags={"v": 1}, pluginsConfigFile="served.yaml",
                                           pluginsCustomConfig=plugins), release="pool")
    (envoy_map,) = [o for o in by_kind(objects)["ConfigMap"] if o["metadata"]["name"] == "pool-epp-envoy"]
    (tmp_path / "envoy.yaml").write_text(envoy_map["data"]["envoy.yaml"])
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump({
        "pool": {"name": "pool", "namespace": "default", "targetPorts": [servers.port]},
        "endpoints": [{"name": f"vllm-{i}", "address": a} for i, a in enumerate(servers.addresses)]}))
    deployment = one(objects, "Deployment")
    epp_container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a for a in materialize(_epp_only(deployment), objects, tmp_path) if not a.startswith("--host=")]
    epp = ManagedProcess(python_argv(*epp_container["command"][1:], *args, "--host", "127.0.0.1",
                                     "--static-file", str(tmp_path / "pool.yaml")),
                         name="epp", log_path=tmp_path / "epp.log")
    envoy = ManagedProcess([envoy_bin, "-c", str(tmp_path / "envoy.yaml"), "--disable-hot-restart",
                            "--base-id", str(free_port())], name="envoy", log_path=tmp_path / "envoy.log")
    await servers.start()
    try:
        await epp.start()
        await epp.read_ready_line("ready", 30)
        await envoy.start()
        async with httpx.AsyncClient(timeout=10) as client:
            await async_eventually(lambda: _ready(client, f"http://127.0.0.1:{sidecar['readyPort']}/ready"), 20)
            url = f"http://127.0.0.1:{sidecar['proxyPort']}/v1/completions"
            replies = await asyncio.gather(*(client.post(url, json={"model": "m", "prompt": "hi"},
                                                         headers={headers.DESTINATION_ENDPOINT: "10.9.9.9:1"})
                                             for _ in range(6)))
        for reply in replies:
            assert reply.status_code == 200, reply.text
            info = json.loads(reply.text)
            assert info["server"] in {f"{a}:{servers.port}" for a in servers.addresses}
            assert info["destination"] == info["server"]  # the EPP's pick, not the client's header
            assert headers.DESTINATION_ENDPOINT_SERVED not in reply.headers
            assert reply.headers[headers.CONFORMANCE_TEST_SERVED_ENDPOINT] == info["server"]  # reported to the EPP
    finally:
        for process in (envoy, epp):
            await process.stop()
        await servers.stop()


async def _ready(client: httpx.AsyncClient, url: str) -> bool | None:
    try:
        return (await client.get(url)).status_code == 200 or None
    except httpx.HTTPError:
        return None
