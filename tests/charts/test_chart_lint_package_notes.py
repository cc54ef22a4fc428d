"""`helm lint` over the values matrix of both charts, `helm package` (the .tgz renders what
the folder renders), and the install notes (NOTES.txt): what to do next, the preview-group
guidance and the warning when a GKE cluster gets provider.name=none."""

from __future__ import annotations

import itertools
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .chartkit import BBR_CHART, GA, POOL_CHART, PREVIEW, PROVIDER_APIS, Helm, pool_values


@pytest.mark.parametrize(("api_version", "provider"), list(itertools.product([GA, PREVIEW], ["none", "gke", "istio"])))
def test_helm_lint_inferencepool(helm: Helm, api_version: str, provider: str) -> None:
    values = pool_values(api_version, provider, flags=[{"name": "v", "value": 2}, {"name": "flow-control", "value": True}])
    values["provider"]["policies"] = "always"
    result = helm.run("lint", "--strict", str(POOL_CHART), "-f", helm.values_file(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


def test_helm_lint_reports_missing_match_labels(helm: Helm) -> None:
    # helm's lint mode turns `fail` into a logged message (install and template fail)
    result = helm.run("lint", str(POOL_CHART), check=False)
    assert "inferencePool.modelServers.matchLabels: required" in result.stdout + result.stderr


@pytest.mark.parametrize("provider", ["none", "gke", "istio"])
def test_helm_lint_body_based_routing(helm: Helm, provider: str) -> None:
    result = helm.run("lint", "--strict", str(BBR_CHART), "--set", f"provider.name={provider}",
                      "--set", "provider.policies=always")
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("chart", [POOL_CHART, BBR_CHART], ids=lambda p: p.name)
def test_helm_package_renders_the_same_as_the_folder(helm: Helm, tmp_path: Path, chart: Path) -> None:
    out = tmp_path / "dist"
    result = helm.run("package", str(chart), "-d", str(out))
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    package = out / f"{meta['name']}-{meta['version']}.tgz"
    assert package.is_file(), result.stdout
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    assert f"{meta['name']}/Chart.yaml" in names and f"{meta['name']}/templates/NOTES.txt" in names
    values = pool_values(PREVIEW, "gke") if chart == POOL_CHART else {"provider": {"name": "gke"}}
    apis_cases: list[list[str]] = [[], PROVIDER_APIS["gke"]]
    for apis in apis_cases:
        from_folder = helm.template(chart, values, release="vllm-llama3-8b-instruct-preview", api_versions=apis)
        from_package = helm.template(package, values, release="vllm-llama3-8b-instruct-preview", api_versions=apis)
        assert from_package == from_folder
        assert len(from_folder) >= 3


def test_notes_tell_the_next_steps_for_a_ga_pool(notes: Callable[..., str]) -> None:
    text = notes(POOL_CHART, pool_values(GA))
    assert "InferencePool pool (inference.networking.k8s.io/v1) in namespace default" in text
    assert "pods with labels app=vllm-llama3-8b-instruct on port 8000" in text
    assert "kubectl get inferencepools.inference.networking.k8s.io pool -n default" in text
    assert "spec.poolRef: {group: inference.networking.k8s.io, name: pool}" in text
    assert "- group: inference.networking.k8s.io\n       kind: InferencePool\n       name: pool" in text
    assert "WARNING" not in text and "NOTE:" not in text


def test_notes_for_a_preview_pool_name_its_group(notes: Callable[..., str]) -> None:
    text = notes(POOL_CHART, pool_values(PREVIEW, flags=[{"name": "zap-log-level", "value": "debug"},
                                                         {"name": "zap-devel", "value": "true"}]))
    assert "infergate epp --pool-group inference.networking.x-k8s.io" in text
    assert "kubectl get inferencepools.inference.networking.x-k8s.io pool" in text
    assert "spec.poolRef: {group: inference.networking.x-k8s.io, name: pool}" in text
    assert "upstream EPP flags without an infergate equivalent were ignored: --zap-log-level, --zap-devel" in text


@pytest.mark.parametrize("signal", ["kube-version", "api"])
def test_notes_warn_when_a_gke_cluster_gets_provider_none(notes: Callable[..., str], signal: str) -> None:
    kwargs: dict[str, object] = (
        {"kube_version": "v1.34.0-gke.1626000"} if signal == "kube-version"
        else {"api_versions": ["networking.gke.io/v1"]})
    text = notes(POOL_CHART, pool_values(GA, "none"), **kwargs)
    assert "WARNING: this cluster looks like GKE" in text
    assert "no HealthCheckPolicy or GCPBackendPolicy was created" in text
    assert "--reuse-values --set provider.name=gke" in text
    # with provider.name=gke on that cluster: no warning, the policies are created
    text = notes(POOL_CHART, pool_values(GA, "gke"), api_versions=PROVIDER_APIS["gke"], **(
        {"kube_version": "v1.34.0-gke.1626000"} if signal == "kube-version" else {}))
    assert "looks like GKE" not in text and "does not serve" not in text


def test_notes_warn_when_the_provider_api_is_absent(notes: Callable[..., str]) -> None:
    text = notes(POOL_CHART, pool_values(GA, "gke"))
    assert "WARNING: provider.name=gke but this cluster does not serve networking.gke.io/v1" in text
    text = notes(POOL_CHART, pool_values(GA, "istio"))
    assert "does not serve networking.istio.io/v1beta1 (DestinationRule)" in text
    assert "the EPP serves plaintext gRPC" in text


def test_bbr_notes(notes: Callable[..., str]) -> None:
    text = notes(BBR_CHART, {"provider": {"name": "none"}})
    assert "body-based-router.default.svc:9004" in text and "FULL_DUPLEX_STREAMED" in text
    assert "X-Gateway-Model-Name" in text
    assert "WARNING: provider.name=gke" in notes(BBR_CHART, {"provider": {"name": "gke"}})
    assert "extension on Gateway inference-gateway was created" in notes(
        BBR_CHART, {"provider": {"name": "gke"}}, api_versions=PROVIDER_APIS["gke"])
