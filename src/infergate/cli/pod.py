"""``python -m infergate.cli.pod ARGS``: ``infergate ARGS`` for a local pod.

The same command line as ``python -m infergate``, with two differences:

- click's environment defaults are on (``INFERGATE_<COMMAND>_<OPTION>``): the local runtime
  sets ``INFERGATE_EPP_HOST``, ``INFERGATE_SIM_ADDRESS``... to the pod IP, so each pod
  listens on its own address unless its arguments say otherwise (a container's ``0.0.0.0``
  is its pod IP);
- with ``INFERGATE_PARENT_PID`` set, the process gets SIGTERM when its parent dies
  (``PR_SET_PDEATHSIG``), so a killed ``infergate up`` leaves no pod behind.

The runtime also sets ``INFERGATE_SERVICEACCOUNT_DIR`` to the pod's own service-account
directory; ``infergate.kube.config.in_cluster`` reads the token and CA from there instead of
the kubelet's projected volume, so in-cluster clients reach the API server as the pod.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

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


def main() -> None:
    _die_with_parent()
    from infergate.cli import main as cli

    cli.main(args=sys.argv[1:], prog_name="infergate", auto_envvar_prefix="INFERGATE")


if __name__ == "__main__":
    main()
