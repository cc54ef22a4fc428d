"""The native kubeconfig and service-account readers (no `kubernetes` import at start, issue 17
defect 8) give what the official loaders give, and hand everything else to them."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.kube import config as kube_config
from infergate.kube import kubeconfig_file
from infergate.kube.config import KubeConfig, from_kubeconfig, in_cluster, kubeconfig_namespace
from infergate.kube.errors import ConfigError

CA = b"-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], namespace: str | None = "team") -> Path:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "ctx",
           "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443", **cluster}}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "ctx", "context": context}, {"name": "other", "context": {"cluster": "c", "user": "u"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def comparable(config: KubeConfig) -> tuple[Any, ...]:
    def content(file: str | None) -> bytes | None:
        return Path(file).read_bytes() if file else None

    return (config.server, config.token, config.ca_pem, content(config.cert_file), content(config.key_file),
            config.verify, config.namespace)


def official(path: Path, context: str | None = None) -> KubeConfig:
    return kube_config._official_kubeconfig(str(path), path, context)


@pytest.mark.parametrize("case", ["token-and-ca-data", "client-certificate-data", "files-relative", "token-file"])
def test_native_reading_matches_the_official_loader(tmp_path: Path, case: str) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(CA)
    (tmp_path / "pki" / "client.crt").write_bytes(CERT)
    (tmp_path / "pki" / "client.key").write_bytes(KEY)
    (tmp_path / "token").write_text("tok-file")  # (client-go trims a trailing newline, the Python loader not)
    cases: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "token-and-ca-data": ({"certificate-authority-data": b64(CA)[:20] + "\n" + b64(CA)[20:]}, {"token": "tok-a"}),
        "client-certificate-data": ({"insecure-skip-tls-verify": True},
                                    {"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)}),
        "files-relative": ({"certificate-authority": "pki/ca.crt"},
                           {"client-certificate": "pki/client.crt", "client-key": "pki/client.key"}),
        "token-file": ({"certificate-authority": str(tmp_path / "pki" / "ca.crt")}, {"tokenFile": "token"}),
    }
    cluster, user = cases[case]
    path = write(tmp_path, cluster, user)
    native = KubeConfig(**kubeconfig_file.read_kubeconfig(path))
    assert comparable(native) == comparable(official(path))
    assert comparable(from_kubeconfig(path)) == comparable(native)
    assert kubeconfig_namespace(path) == "team" and kubeconfig_namespace(path, "other") == "default"
    assert from_kubeconfig(path, "other").namespace == official(path, "other").namespace == "default"


def test_exec_plugins_and_kubeconfig_lists_go_to_the_official_loader(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    credential = ('{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",'
                  '"status":{"token":"tok-exec"}}')
    path = write(tmp_path, {"certificate-authority-data": b64(CA)},
                 {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
                           "args": ["-c", f"print({credential!r})"]}})
    with pytest.raises(kubeconfig_file.Unsupported, match="exec"):
        kubeconfig_file.read_kubeconfig(path)
    assert from_kubeconfig(path).token == "tok-exec"
    second = tmp_path / "second"
    second.mkdir()
    other = write(second, {}, {"token": "tok-second"})
    monkeypatch.setenv("KUBECONFIG", f"{other}{os.pathsep}{path}")  # merged: the first file's current context
    assert from_kubeconfig().token == "tok-second"


def test_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, {}, {"token": "t"})
    with pytest.raises(ConfigError, match="no context named 'missing'"):
        from_kubeconfig(path, "missing")
    with pytest.raises(ConfigError, match="No such file"):
        from_kubeconfig(tmp_path / "absent")
    half = write(tmp_path, {}, {"client-certificate-data": b64(CERT)})
    with pytest.raises(ConfigError, match="without its key"):
        from_kubeconfig(half)


def test_in_cluster_matches_the_official_loader(tmp_path: Path) -> None:
    from kubernetes.client import Configuration
    from kubernetes.config.incluster_config import InClusterConfigLoader

    (tmp_path / "token").write_text("tok-pod")
    (tmp_path / "ca.crt").write_bytes(CA)
    (tmp_path / "namespace").write_text("prod")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    native = in_cluster(tmp_path, env)
    cfg = Configuration()
    InClusterConfigLoader(token_filename=str(tmp_path / "token"), cert_filename=str(tmp_path / "ca.crt"),
                          environ=env).load_and_set(cfg)  # type: ignore[no-untyped-call]
    assert native.server == str(cfg.host) == "https://[fd00::1]:443"
    assert native.bearer_token() == "tok-pod" and native.ca_pem == CA and native.namespace == "prod"
    (tmp_path / "token").write_text("tok-rotated")  # the kubelet rotates projected tokens
    assert native.bearer_token() == "tok-rotated"
    with pytest.raises(ConfigError, match="not in a cluster"):
        in_cluster(tmp_path, {})
    (tmp_path / "token").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        in_cluster(tmp_path, env)


def test_reading_a_kubeconfig_does_not_import_the_kubernetes_package(tmp_path: Path) -> None:
    path = write(tmp_path, {"certificate-authority-data": b64(CA)}, {"token": "tok"})
    code = ("import sys; from infergate.kube.config import load_config; c = load_config(sys.argv[1]); "
            "assert c.token == 'tok'; print('kubernetes' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
