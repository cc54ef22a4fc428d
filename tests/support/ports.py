"""Each pytest-xdist worker picks free ports from its own share of the range.

``util.net.free_port`` checks that a port is free when it picks it; the server that gets it binds
it later, often in a process that takes a second to start. Two workers could pick the same port
in that window: the second process then exited on a taken port (seen as a health check meeting a
closing server). With a share each (``INFERGATE_PORT_RANGE``, inherited by the processes a test
starts), no port one worker picked is ever picked by the other.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from infergate.util.net import PORT_RANGE_ENV, port_range_share


def share_for_worker(workerinput: Mapping[str, Any] | None, environ: MutableMapping[str, str]) -> None:
    """Set ``environ``'s port range to this worker's share (``workerinput``: xdist's, None without
    workers: the whole range stays this process's)."""
    if workerinput is None:
        return
    index, count = int(str(workerinput["workerid"]).removeprefix("gw")), int(workerinput["workercount"])
    environ[PORT_RANGE_ENV] = port_range_share(index, count, environ)
