"""Where the API server is and how to authenticate: kubeconfig or in-cluster.

:func:`load_config` is the one factory: an explicit kubeconfig wins; else, unless told
otherwise, the in-cluster service account; else the default kubeconfig (``$KUBECONFIG``,
``~/.kube/config``). The service account and the common kubeconfigs (token or client
certificate, CA file or data) are read by :mod:`infergate.kube.kubeconfig_file`, without
importing the ``kubernetes`` package (a third of a second at every start); every other
kubeconfig (exec plugins, auth providers, several files in ``$KUBECONFIG``...) goes through
the ``kubernetes`` package's loader, into a private ``Configuration``, never the package's
global default.

In a pod the service account is read from ``/var/run/secrets/kubernetes.io/serviceaccount``;
``INFERGATE_SERVICEACCOUNT_DIR`` names another directory (the local runtime gives every
local pod its own token there).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infergate.kube import kubeconfig_file
from infergate.kube.errors import ConfigError

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_DIR_ENV = "INFERGATE_SERVICEACCOUNT_DIR"


@dataclass(frozen=True)
class KubeConfig:
    """One API server and the credentials for it."""

    server: str
    token: str = ""  # the bearer token at load time (see bearer_token for rotating ones)
    ca_pem: bytes | None = None
    cert_file: str | None = None  # client certificate and key (PEM files)
    key_file: str | None = None
    verify: bool = True
    namespace: str = "default"
    token_source: Callable[[], str] | None = field(default=None, compare=False, repr=False)

    def bearer_token(self) -> str:
        """The token to send now (re-read when the loader rotates it: projected service-account tokens)."""
        return self.token_source() if self.token_source is not None else self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The TLS settings for aiohttp (False for plain http). With a CA in the kubeconfig only that
        CA is trusted, as kubectl does; without one, the system's CAs (loading those took ~30 ms of
        CPU for every client opened)."""
        if not self.server.startswith("https"):
            return False
        if self.ca_pem:
            context = ssl.create_default_context(cadata=self.ca_pem.decode())
        else:
            context = ssl.create_default_context()
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _strip_bearer(value: str | None) -> str:
    if not value:
        return ""
    scheme, _, rest = value.partition(" ")
    return rest if rest and scheme.lower() == "bearer" else value


def _from_configuration(cfg: object, namespace: str) -> KubeConfig:
    from kubernetes.client import Configuration

    assert isinstance(cfg, Configuration)

    def token() -> str:
        return _strip_bearer(cfg.get_api_key_with_prefix("BearerToken", alias="authorization"))

    ca_pem = Path(cfg.ssl_ca_cert).read_bytes() if cfg.ssl_ca_cert else None
    return KubeConfig(server=str(cfg.host).rstrip("/"), token=token(), ca_pem=ca_pem, cert_file=cfg.cert_file,
                      key_file=cfg.key_file, verify=bool(cfg.verify_ssl), namespace=namespace,
                      token_source=token if cfg.refresh_api_key_hook is not None else None)


def _kubeconfig_file(path: Path | str | None) -> str | None:
    """``path``, else ``$KUBECONFIG`` as it is now (the loader reads it once, at import), else None: ~/.kube/config."""
    return str(path) if path else os.environ.get("KUBECONFIG") or None


def _single_file(file: str | None) -> Path | None:
    """The one kubeconfig file to read natively; None for a ``$KUBECONFIG`` list (merged by the official loader)."""
    if file is not None and os.pathsep in file:
        return None
    return Path(file or "~/.kube/config").expanduser()


def from_kubeconfig(path: Path | str | None = None, context: str | None = None) -> KubeConfig:
    """A kubeconfig's context (``path`` None: ``$KUBECONFIG`` or ``~/.kube/config``)."""
    file = _kubeconfig_file(path)
    single = _single_file(file)
    if single is not None:
        try:
            return KubeConfig(**kubeconfig_file.read_kubeconfig(single, context))
        except kubeconfig_file.Invalid as exc:  # its text starts with the file's path
            raise ConfigError(f"cannot load kubeconfig {exc}") from exc
        except kubeconfig_file.Unsupported:
            pass  # exec plugins, auth providers...: the official loader
    return _official_kubeconfig(file, path, context)


def _official_kubeconfig(file: str | None, path: Path | str | None, context: str | None) -> KubeConfig:
    from kubernetes.client import Configuration
    from kubernetes.config import ConfigException, kube_config

    cfg = Configuration()
    try:
        kube_config.load_kube_config(config_file=file, context=context, client_configuration=cfg,
                                     persist_config=False)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"cannot load kubeconfig {file or '(default)'}: {exc}") from exc
    return _from_configuration(cfg, kubeconfig_namespace(path, context))


def kubeconfig_namespace(path: Path | str | None = None, context: str | None = None) -> str:
    """The namespace of a kubeconfig's context (default: current), without loading credentials."""
    file = _kubeconfig_file(path)
    single = _single_file(file)
    if single is not None:
        try:
            return kubeconfig_file.read_namespace(single, context)
        except kubeconfig_file.Invalid as exc:  # its text starts with the file's path
            raise ConfigError(f"cannot load kubeconfig {exc}") from exc
    from kubernetes.config import ConfigException, kube_config

    try:
        contexts, active = kube_config.list_kube_config_contexts(file)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"cannot load kubeconfig {file or '(default)'}: {exc}") from exc
    chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def in_cluster(service_account_dir: Path | str | None = None,
               environ: Mapping[str, str] | None = None) -> KubeConfig:
    """The pod's service account: ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the token and CA files.

    The directory is ``service_account_dir``, else ``$INFERGATE_SERVICEACCOUNT_DIR``, else the
    kubelet's projected volume. The token is re-read when it rotates.
    """
    env = os.environ if environ is None else environ
    directory = Path(service_account_dir or env.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)
    try:
        return KubeConfig(**kubeconfig_file.read_service_account(directory, env))
    except kubeconfig_file.Invalid as exc:
        raise ConfigError(f"not in a cluster: {exc}") from exc


def load_config(kubeconfig: Path | str | None = None, context: str | None = None, *,
                in_cluster_first: bool = True, environ: Mapping[str, str] | None = None) -> KubeConfig:
    """The one way to find the API server: ``kubeconfig`` if given, else in-cluster, else the default kubeconfig."""
    if kubeconfig:
        return from_kubeconfig(kubeconfig, context)
    if in_cluster_first:
        try:
            return in_cluster(environ=environ)
        except ConfigError:
            pass
    return from_kubeconfig(None, context)
