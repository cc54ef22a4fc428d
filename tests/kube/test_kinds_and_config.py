"""The table of kinds (derived from api.registry) and the configuration factory."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from infergate.api import registry
from infergate.apiserver.embedded import kubeconfig_text
from infergate.kube import kinds
from infergate.kube.config import KubeConfig, from_kubeconfig, in_cluster, kubeconfig_namespace, load_config
from infergate.kube.errors import ConfigError
from infergate.util.tls import ensure_certificate


def test_every_served_kind_is_in_the_table_at_its_storage_version() -> None:
    for t in registry.all_types():
        k = kinds.get(t.group, t.kind, t.version)
        assert (k.plural, k.namespaced, k.api_version) == (t.plural, t.namespaced, t.api_version)
    every = kinds.all_kinds()
    assert len({(k.group, k.version, k.kind) for k in every}) == len(every)  # no duplicates


def test_the_named_kinds_are_the_registrys() -> None:
    # written out so that clients do not import the models (issue 17 defect 8): each is what the
    # registry-derived table answers for its group and kind
    for named in kinds.NAMED:
        assert named in kinds.all_kinds(), named
        assert next(k for k in kinds.all_kinds() if k.gk == named.gk) == named, named


def test_paths_and_lookups() -> None:
    assert kinds.GA_POOLS.path("ns", "p", "status") == "/apis/inference.networking.k8s.io/v1/namespaces/ns/inferencepools/p/status"
    assert kinds.PODS.path() == "/api/v1/pods"
    assert kinds.GATEWAY_CLASSES.path("ignored", "gc") == "/apis/gateway.networking.k8s.io/v1/gatewayclasses/gc"
    assert kinds.PREVIEW_POOLS.qualified == "inferencepools.inference.networking.x-k8s.io"
    assert kinds.of({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "HTTPRoute"}) is kinds.HTTPROUTES
    assert kinds.of({"apiVersion": "apps/v1", "kind": "Deployment"}) is kinds.DEPLOYMENTS
    with pytest.raises(ValueError, match="no resource known"):
        kinds.of({"apiVersion": "example.com/v1", "kind": "Widget"})


def _kubeconfig(tmp_path: Path) -> Path:
    text = kubeconfig_text("https://127.0.0.1:6443", "tok-a", b"-----BEGIN CERTIFICATE-----\n", name="a")
    text = text.replace("namespace: default", "namespace: team-a")
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    return path



def test_a_kubeconfigs_ca_is_the_only_one_trusted_as_kubectl_does(tmp_path: Path) -> None:
    """With certificate-authority(-data) the client trusts that CA alone (client-go's rule), and
    builds its context without loading the system's CAs; without one, the system's CAs."""
    cert, _ = ensure_certificate(tmp_path, "127.0.0.1")
    own = KubeConfig(server="https://127.0.0.1:6443", ca_pem=cert.read_bytes()).ssl_context()
    assert isinstance(own, ssl.SSLContext) and own.verify_mode == ssl.CERT_REQUIRED and own.check_hostname
    assert own.cert_store_stats()["x509"] == 1
    system = KubeConfig(server="https://127.0.0.1:6443").ssl_context()
    assert isinstance(system, ssl.SSLContext)
    assert system.cert_store_stats() == ssl.create_default_context().cert_store_stats()
    unverified = KubeConfig(server="https://127.0.0.1:6443", ca_pem=cert.read_bytes(), verify=False).ssl_context()
    assert isinstance(unverified, ssl.SSLContext) and unverified.verify_mode == ssl.CERT_NONE
    assert KubeConfig(server="http://127.0.0.1:8080").ssl_context() is False

def test_kubeconfig_through_the_official_loader(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path)
    config = from_kubeconfig(path)
    assert (config.server, config.token, config.namespace) == ("https://127.0.0.1:6443", "tok-a", "team-a")
    assert config.ca_pem == b"-----BEGIN CERTIFICATE-----\n"
    assert kubeconfig_namespace(path) == "team-a"
    with pytest.raises(ConfigError):
        from_kubeconfig(path, context="missing")
    with pytest.raises(ConfigError):
        from_kubeconfig(tmp_path / "absent")


def test_an_explicit_kubeconfig_wins_then_in_cluster_then_the_default(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("tok-pod")
    (sa / "ca.crt").write_text("ca")
    pod_env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443",
               "INFERGATE_SERVICEACCOUNT_DIR": str(sa)}
    path = _kubeconfig(tmp_path)
    assert load_config(path, environ=pod_env).token == "tok-a"
    assert load_config(environ=pod_env).token == "tok-pod"
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert load_config(environ={}).token == "tok-a"  # not in a cluster: the default kubeconfig
    assert load_config(environ=pod_env, in_cluster_first=False).token == "tok-a"
    with pytest.raises(ConfigError, match="not in a cluster"):
        in_cluster(environ={})
