"""The data plane: real Envoy, configured over xDS from an IR (``infergate.ir``).

Use from the gateway process::

    async with Dataplane(DataplaneOptions(work_dir=path)) as dataplane:
        result = await dataplane.apply(ir)      # returns once Envoy ACKed; raises XdsRejected on NACK
        print(dataplane.admin_address)

This package never imports ``infergate.controller``; it reads only the IR.

Modules: ``xds_translator`` (IR -> Envoy resources, pure; one module per resource kind and per
HTTP filter), ``xds_server`` (ADS, ordering,
ACK/NACK), ``envoy`` (bootstrap and supervisor), ``binary`` (where Envoy is).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infergate.dataplane.envoy import EnvoySupervisor
    from infergate.dataplane.xds_server import XdsServer
    from infergate.dataplane.xds_translator import EnvoyResources, TranslateOptions
    from infergate.ir import DataplaneConfig

log = logging.getLogger(__name__)

__all__ = ["ApplyResult", "Dataplane", "DataplaneOptions"]


# The imports below are function-level so that ``import infergate.dataplane`` (e.g. for
# ``xds_translator`` or ``binary`` alone) does not load grpc and Envoy's protobufs.


def _default_translate_options() -> TranslateOptions:
    from infergate.dataplane.xds_translator import TranslateOptions  # light import: see above

    return TranslateOptions()


@dataclass(frozen=True)
class DataplaneOptions:
    work_dir: Path | None = None  # bootstrap + Envoy log; a temporary directory when None
    node_id: str = "infergate"
    xds_host: str = "127.0.0.1"
    xds_port: int = 0  # 0 = any free port
    admin_host: str = "127.0.0.1"  # keep it on loopback
    envoy_bin: str | None = None
    concurrency: int = 1  # Envoy worker threads
    log_level: str = "warning"
    drain_time_s: float = 5.0  # stop(): how long in-flight requests may finish
    listener_drain_time_s: float = 600.0  # a changed/removed listener's old connections may finish
    apply_timeout_s: float = 15.0
    start_timeout_s: float = 20.0
    translate: TranslateOptions = field(default_factory=_default_translate_options)


@dataclass(frozen=True)
class ApplyResult:
    versions: dict[str, str]  # xDS type -> version Envoy ACKed
    warnings: tuple[str, ...]  # translation warnings (e.g. a backend missing from the IR)


async def publish(xds: XdsServer, resources: EnvoyResources, timeout: float) -> ApplyResult:
    """Log ``resources``' translation warnings and push them to every Envoy of ``xds``; returns
    once they ACKed. Raises ``XdsError`` (a NACK: the previous configuration keeps serving; or a
    timeout)."""
    for warning in resources.warnings:
        log.warning("data plane: %s", warning)
    versions = await xds.push(resources, timeout=timeout)
    return ApplyResult(versions=versions, warnings=resources.warnings)


class Dataplane:
    """xDS server + supervised Envoy. ``apply(ir)`` pushes a config make-before-break."""

    def __init__(self, options: DataplaneOptions | None = None) -> None:
        self.options = options or DataplaneOptions()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._xds: XdsServer | None = None
        self._envoy: EnvoySupervisor | None = None
        self.last_error: str | None = None

    @property
    def admin_address(self) -> tuple[str, int]:
        return self.envoy.admin_address

    @property
    def envoy(self) -> EnvoySupervisor:
        if self._envoy is None:
            raise RuntimeError("the data plane is not running")
        return self._envoy

    @property
    def xds(self) -> XdsServer:
        if self._xds is None:
            raise RuntimeError("the data plane is not running")
        return self._xds

    async def start(self) -> None:
        from infergate.dataplane.envoy import EnvoyOptions, EnvoySupervisor  # light import: see above
        from infergate.dataplane.xds_server import XdsServer

        opts = self.options
        work_dir = opts.work_dir
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="infergate-envoy-")
            work_dir = Path(self._tmp.name)
        self._xds = XdsServer(
            opts.xds_host, opts.xds_port, idle_check=self._idle_clusters, clusters_warm=self._clusters_warm
        )
        address = await self._xds.start()
        self._envoy = EnvoySupervisor(
            EnvoyOptions(
                work_dir=work_dir,
                xds_address=address,
                node_id=opts.node_id,
                envoy_bin=opts.envoy_bin,
                admin_host=opts.admin_host,
                concurrency=opts.concurrency,
                log_level=opts.log_level,
                drain_time_s=opts.drain_time_s,
                listener_drain_time_s=opts.listener_drain_time_s,
                start_timeout_s=opts.start_timeout_s,
            )
        )
        try:
            await self._envoy.start()
            await self._xds.wait_for_connection(opts.start_timeout_s)
        except BaseException:
            await self.stop()
            raise

    async def _idle_clusters(self, names: set[str]) -> set[str]:
        if self._envoy is None or self._envoy.pid is None:
            return set(names)  # no Envoy running: nothing in flight
        return await self._envoy.idle_clusters(names)

    async def _clusters_warm(self, timeout: float) -> None:
        from infergate.dataplane.envoy import EnvoyError  # light import: see above

        if self._envoy is None or self._envoy.pid is None:
            return
        try:
            await self._envoy.wait_clusters_warm(min(timeout, 5.0))
        except EnvoyError as exc:  # e.g. an EDS cluster Envoy never got endpoints for
            log.warning("data plane: %s; continuing", exc)

    async def apply(self, ir: DataplaneConfig) -> ApplyResult:
        """Translate and deliver ``ir``; returns once Envoy has ACKed every step.

        Raises ``TranslationError`` (the IR cannot be served), ``XdsRejected`` (Envoy NACKed:
        it keeps the last good config, ``last_error`` has the reason) or ``XdsTimeout``.
        """
        from infergate.dataplane.xds_server import XdsError  # light import: see above
        from infergate.dataplane.xds_translator import translate

        try:
            result = await publish(self.xds, translate(ir, options=self.options.translate),
                                   self.options.apply_timeout_s)
        except XdsError as exc:
            self.last_error = str(exc)
            raise
        self.last_error = None
        return result

    def status(self) -> dict[str, object]:
        """A JSON-able summary for an admin endpoint: versions, NACK, Envoy process."""
        xds, envoy = self._xds, self._envoy
        nack = xds.last_nack if xds else None
        return {
            "versions": xds.versions if xds else {},
            "connected": xds.connected_nodes if xds else [],
            "last_error": self.last_error,
            "last_nack": None
            if nack is None
            else {"type": nack.type_url, "version": nack.version, "reason": nack.reason},
            "envoy_pid": envoy.pid if envoy else None,
            "envoy_restarts": envoy.restarts if envoy else 0,
            "admin_address": "{}:{}".format(*envoy.admin_address) if envoy and envoy.pid else None,
        }

    async def stop(self) -> None:
        if self._envoy is not None:
            await self._envoy.stop()
        if self._xds is not None:
            await self._xds.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> Dataplane:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
