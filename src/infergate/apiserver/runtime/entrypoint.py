"""``python -m infergate.apiserver.runtime.entrypoint ARGS``: ``infergate ARGS`` for a local pod.

The same command line as ``python -m infergate``, with two differences:

- click's environment defaults are on (``INFERGATE_<COMMAND>_<OPTION>``): the local runtime
  sets ``INFERGATE_EPP_HOST``, ``INFERGATE_SIM_ADDRESS``... to the pod IP, so each pod
  listens on its own address unless its arguments say otherwise (a container's ``0.0.0.0``
  is its pod IP);
- with ``INFERGATE_PARENT_PID`` set, the process gets SIGTERM when its parent dies
  (``PR_SET_PDEATHSIG``), so a killed ``infergate up`` leaves no pod behind;
- with ``INFERGATE_SERVICEACCOUNT_DIR`` set, the Kubernetes client's in-cluster
  configuration reads the service-account token and CA from that directory instead of
  ``/var/run/secrets/kubernetes.io/serviceaccount`` (the kubelet's projected volume), so
  ``--in-cluster`` and in-cluster-first clients reach the API server too. The client module
  is patched when it is imported, not imported here (``infergate sim`` stays fast).
"""

from __future__ import annotations

import ctypes
import importlib.abc
import importlib.machinery
import importlib.util
import os
import signal
import sys
from types import ModuleType

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    parent = os.environ.get("INFERGATE_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the parent died before prctl
        sys.exit(1)


INCLUSTER_MODULE = "kubernetes.config.incluster_config"


class _ServiceAccountLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, directory: str) -> None:
        self.inner = inner
        self.directory = directory

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        module.SERVICE_TOKEN_FILENAME = os.path.join(self.directory, "token")  # type: ignore[attr-defined]
        module.SERVICE_CERT_FILENAME = os.path.join(self.directory, "ca.crt")  # type: ignore[attr-defined]


class ServiceAccountFinder(importlib.abc.MetaPathFinder):
    """Points the kubernetes client's in-cluster token/CA paths at ``directory`` on import."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != INCLUSTER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ServiceAccountLoader(spec.loader, self.directory)
        return spec


def install_service_account(directory: str | None) -> None:
    if directory and INCLUSTER_MODULE not in sys.modules:
        sys.meta_path.insert(0, ServiceAccountFinder(directory))


def main() -> None:
    _die_with_parent()
    install_service_account(os.environ.get("INFERGATE_SERVICEACCOUNT_DIR"))
    from infergate.cli import main as cli

    cli.main(args=sys.argv[1:], prog_name="infergate", auto_envvar_prefix="INFERGATE")


if __name__ == "__main__":
    main()
