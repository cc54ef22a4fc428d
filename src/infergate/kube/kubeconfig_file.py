"""Reading the common kubeconfigs and the in-cluster service account without the ``kubernetes``
package, whose import alone costs about a third of a second of CPU at every process start (the
EPP's time to ready, issue 17 defect 8).

:func:`read_kubeconfig` understands one file whose context's user authenticates with a token
(``token``, ``tokenFile``) and/or a client certificate (files or ``*-data``), and whose cluster
has ``server``, a CA (file or data) and ``insecure-skip-tls-verify``. Anything else (exec
plugins, auth providers, basic auth, proxies, a ``$KUBECONFIG`` list of files...) raises
:class:`Unsupported`, and :mod:`infergate.kube.config` hands the file to the official loader.
:func:`read_service_account` is the in-cluster configuration, as client-go's ``InClusterConfig``.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from infergate.api import yamlload

CLUSTER_KEYS = frozenset({"server", "certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify",
                          "extensions"})
USER_KEYS = frozenset({"token", "tokenFile", "client-certificate", "client-certificate-data", "client-key",
                       "client-key-data", "extensions"})


class Unsupported(Exception):
    """This kubeconfig needs the official loader (the message says why)."""


class Invalid(Exception):
    """The kubeconfig or service account is unusable (the message says what is wrong)."""


def _named(entries: Any, name: str, what: str, source: str) -> Mapping[str, Any]:
    for entry in entries or ():
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get(what)
            if not isinstance(value, Mapping):
                raise Invalid(f"{source}: {what} {name!r} has no {what} settings")
            return value
    raise Invalid(f"{source}: no {what} named {name!r}")


def _private_file(content: bytes, suffix: str) -> str:
    handle, path = tempfile.mkstemp(prefix="infergate-kubeconfig-", suffix=suffix)  # mode 0600
    with os.fdopen(handle, "wb") as out:
        out.write(content)
    return path


def _file_or_data(settings: Mapping[str, Any], key: str, base: Path, source: str) -> tuple[bytes | None, str | None]:
    """(content, path) of ``key`` (a file, relative to the kubeconfig's directory) or ``key-data``
    (base64); the path is a private temporary file for data."""
    data = settings.get(f"{key}-data")
    if data:
        try:
            content = base64.b64decode(str(data))  # as the official loader: characters outside base64 ignored
        except ValueError as exc:
            raise Invalid(f"{source}: {key}-data is not base64: {exc}") from None
        return content, None
    name = settings.get(key)
    if not name:
        return None, None
    path = Path(str(name)).expanduser()
    if not path.is_absolute():
        path = base / path
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise Invalid(f"{source}: {key} {path}: {exc.strerror}") from None


def read_kubeconfig(path: Path, context: str | None = None) -> dict[str, Any]:
    """The fields of a :class:`~infergate.kube.config.KubeConfig` for ``context`` (default: current)."""
    source = str(path)
    try:
        document = yamlload.load(path.read_text())
    except OSError as exc:
        raise Invalid(f"{source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise Invalid(f"{source}: not YAML: {exc}") from None
    if not isinstance(document, Mapping):
        raise Invalid(f"{source}: not a kubeconfig (no mapping)")
    name = context or document.get("current-context")
    if not name:
        raise Invalid(f"{source}: no current-context and no context given")
    ctx = _named(document.get("contexts"), str(name), "context", source)
    cluster = _named(document.get("clusters"), str(ctx.get("cluster", "")), "cluster", source)
    user = _named(document.get("users"), str(ctx.get("user", "")), "user", source) if ctx.get("user") else {}
    extra = (set(cluster) - CLUSTER_KEYS) | (set(user) - USER_KEYS)
    if extra:
        raise Unsupported(f"{source}: {', '.join(sorted(extra))}")
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise Invalid(f"{source}: cluster {ctx.get('cluster')!r} has no server")
    base = path.parent
    ca_pem, _ = _file_or_data(cluster, "certificate-authority", base, source)
    token = str(user.get("token") or "")
    if not token and user.get("tokenFile"):
        token_path = Path(str(user["tokenFile"])).expanduser()
        try:
            token = (token_path if token_path.is_absolute() else base / token_path).read_text().strip()
        except OSError as exc:
            raise Invalid(f"{source}: tokenFile {token_path}: {exc.strerror}") from None
    cert, cert_file = _file_or_data(user, "client-certificate", base, source)
    key, key_file = _file_or_data(user, "client-key", base, source)
    if (cert is None) != (key is None):
        raise Invalid(f"{source}: user {ctx.get('user')!r} has a client certificate without its key or the reverse")
    if cert is not None and cert_file is None:
        cert_file = _private_file(cert, ".crt")
    if key is not None and key_file is None:
        key_file = _private_file(key, ".key")
    return {"server": server, "token": token, "ca_pem": ca_pem, "cert_file": cert_file, "key_file": key_file,
            "verify": not bool(cluster.get("insecure-skip-tls-verify")),
            "namespace": str(ctx.get("namespace") or "default")}


def read_namespace(path: Path, context: str | None = None) -> str:
    """The namespace of a context (default: the current one), credentials not read."""
    try:
        document = yamlload.load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise Invalid(f"{path}: {exc}") from None
    if not isinstance(document, Mapping):
        raise Invalid(f"{path}: not a kubeconfig (no mapping)")
    name = context or document.get("current-context")
    for entry in document.get("contexts") or ():
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return str((entry.get("context") or {}).get("namespace") or "default")
    raise Invalid(f"{path}: no context named {name!r}")


def rotating_token(path: Path) -> Callable[[], str]:
    """The token in ``path``, read again when the file changes (kubelet rotates projected tokens)."""
    state: dict[str, Any] = {"stamp": None, "token": ""}

    def token() -> str:
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
            if stamp != state["stamp"]:
                state["token"] = path.read_text().strip()
                state["stamp"] = stamp
        except OSError:
            pass  # keep the last token: the next rotation writes the file again
        return str(state["token"])

    return token


def read_service_account(directory: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """The in-cluster configuration: ``KUBERNETES_SERVICE_HOST``/``_PORT``, ``token``, ``ca.crt``
    and ``namespace`` in ``directory``."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise Invalid("Service host/port is not set (KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT)")
    token_path, ca_path = directory / "token", directory / "ca.crt"
    try:
        token = token_path.read_text().strip()
        ca_pem = ca_path.read_bytes()
    except OSError as exc:
        raise Invalid(f"service account file {exc.filename}: {exc.strerror}") from None
    if not token:
        raise Invalid(f"service account token file {token_path} is empty")
    if not ca_pem.strip():
        raise Invalid(f"service account CA file {ca_path} is empty")
    try:
        namespace = (directory / "namespace").read_text().strip() or "default"
    except OSError:
        namespace = "default"
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {"server": f"https://{hostport}", "token": token, "ca_pem": ca_pem, "namespace": namespace,
            "token_source": rotating_token(token_path)}
