"""``python -m infergate.apiserver.runtime.entrypoint ARGS``: ``infergate ARGS`` for a local pod.

The same command line as ``python -m infergate``, with click's environment defaults on
(``INFERGATE_<COMMAND>_<OPTION>``): the local runtime sets ``INFERGATE_EPP_HOST``,
``INFERGATE_SIM_ADDRESS``... to the pod IP, so each pod listens on its own address unless its
arguments say otherwise, the way a container's ``0.0.0.0`` means its pod IP.
"""

from __future__ import annotations

import sys


def main() -> None:
    from infergate.cli import main as cli

    cli.main(args=sys.argv[1:], prog_name="infergate", auto_envvar_prefix="INFERGATE")


if __name__ == "__main__":
    main()
