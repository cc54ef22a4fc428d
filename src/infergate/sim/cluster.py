"""A pool of simulated replicas in one process (one event loop), plus the admin server.

The admin server (fault injection, ``sim.admin``) listens only when ``admin_port`` is given, on
its own port: never on the replicas' serving port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from types import TracebackType

from aiohttp import web

from infergate.sim import admin
from infergate.sim.config import SimConfig
from infergate.sim.replica import Replica


def consecutive_addresses(first: str, count: int) -> list[str]:
    """``first`` and the next ``count - 1`` IPv4 addresses (127.40.1.1 -> 127.40.1.2, ...)."""
    start = ipaddress.IPv4Address(first)
    return [str(start + i) for i in range(count)]


def replica_name(config: SimConfig, index: int, count: int) -> str:
    if config.pod_name:
        return config.pod_name if count == 1 else f"{config.pod_name}-{index}"
    return f"sim-{index}"


class SimCluster:
    """Replicas on ``addresses`` (one each), all on ``port``; an async context manager.

    Replica names (the ``x-inference-pod`` header) are ``names`` when given, else
    ``config.pod_name`` (``<pod_name>-<i>`` for several replicas), else ``sim-<i>``.

    ``cluster.endpoints`` are ``"ip:port"`` strings; ``cluster.replicas[i]`` is a ``Replica``
    (engine state in ``.engine``, faults through ``.set_faults()``, ``.crash()``, ``.restart()``).
    """

    def __init__(self, config: SimConfig, addresses: Sequence[str], port: int, *,
                 names: Sequence[str] | None = None, admin_address: str | None = None,
                 admin_port: int | None = None) -> None:
        if not addresses:
            raise ValueError("addresses: at least one address is needed")
        if names is not None and (len(names) != len(addresses) or len(set(names)) != len(names)):
            raise ValueError("names: one distinct name per address is needed")
        self.config = config
        self.port = port
        self.replicas = [
            Replica(config, address, port, index=i,
                    name=names[i] if names is not None else replica_name(config, i, len(addresses)))
            for i, address in enumerate(addresses)
        ]
        self._admin_address = admin_address or "127.0.0.1"
        self._admin_port = admin_port
        self._admin_runner: web.AppRunner | None = None

    @property
    def endpoints(self) -> list[str]:
        return [r.endpoint for r in self.replicas]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def replica(self, key: str | int) -> Replica:
        """A replica by index, name or endpoint."""
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            index = int(key)
            if 0 <= index < len(self.replicas):
                return self.replicas[index]
        for r in self.replicas:
            if key in (r.name, r.endpoint, r.host):
                return r
        raise KeyError(f"no replica {key!r} (replicas: {', '.join(r.name for r in self.replicas)})")

    async def start(self) -> None:
        started: list[Replica] = []
        try:
            for r in self.replicas:
                await r.start()
                started.append(r)
            if self._admin_port is not None:
                runner = web.AppRunner(self._admin_app(), access_log=None, shutdown_timeout=0.5)
                await runner.setup()
                await web.TCPSite(runner, self._admin_address, self._admin_port, reuse_address=True).start()
                self._admin_runner = runner
        except BaseException:
            for r in started:
                await r.stop()
            raise

    async def stop(self) -> None:
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
            self._admin_runner = None
        for r in self.replicas:
            await r.stop()

    async def __aenter__(self) -> SimCluster:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def admin_url(self) -> str | None:
        """``http://address:port`` of the admin API, or None when it is off."""
        if self._admin_port is None:
            return None
        return f"http://{self._admin_address}:{self._admin_port}"

    def _admin_app(self) -> web.Application:
        return admin.build_app(self.replicas, self.replica)
