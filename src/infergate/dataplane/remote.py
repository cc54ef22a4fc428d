"""The data plane of ``--data-plane deployments``: an xDS server for Envoys that run elsewhere.

No local Envoy: Envoy pods (``infergate envoy``, one Deployment per Gateway) connect to this
ADS server, each naming its Gateway and pod IP in its node metadata, and get that Gateway's
listeners (``xds_server.node_listeners``). ``apply(ir)`` returns once every *connected* Envoy
ACKed (none connected: at once; they get the configuration when they connect).
``synced_gateways()`` says which Gateways have at least one Envoy running the current
configuration (what ``Programmed`` reports).

    async with RemoteDataplane(RemoteDataplaneOptions(xds_host="0.0.0.0", xds_port=18000)) as dp:
        await dp.apply(ir)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from infergate.dataplane import ApplyResult
from infergate.dataplane.xds_server import XdsError, XdsServer
from infergate.dataplane.xds_translator import TranslateOptions, translate
from infergate.ir import DataplaneConfig

log = logging.getLogger(__name__)

__all__ = ["RemoteDataplane", "RemoteDataplaneOptions"]


@dataclass(frozen=True)
class RemoteDataplaneOptions:
    xds_host: str = "0.0.0.0"
    xds_port: int = 18000  # 0 = any free port
    apply_timeout_s: float = 15.0
    translate: TranslateOptions = field(default_factory=TranslateOptions)


class RemoteDataplane:
    """An ADS server for a fleet of Envoys; the ``Applier`` of the reconcile loop."""

    def __init__(self, options: RemoteDataplaneOptions | None = None, *,
                 on_nodes_changed: Callable[[], None] | None = None) -> None:
        self.options = options or RemoteDataplaneOptions()
        self._on_nodes_changed = on_nodes_changed
        self._xds: XdsServer | None = None
        self.last_error: str | None = None

    @property
    def xds(self) -> XdsServer:
        if self._xds is None:
            raise RuntimeError("the data plane is not running")
        return self._xds

    @property
    def xds_address(self) -> tuple[str, int]:
        return self.xds.address

    async def start(self) -> None:
        # No idle check: the Envoys' admin APIs are not reachable from here, so a cluster no
        # route uses any more is removed once every Envoy ACKed the new routes.
        self._xds = XdsServer(self.options.xds_host, self.options.xds_port, require_connection=False,
                              on_nodes_changed=self._on_nodes_changed)
        await self._xds.start()

    async def apply(self, ir: DataplaneConfig) -> ApplyResult:
        """Translate and deliver ``ir``; returns once every connected Envoy ACKed (``XdsRejected``
        when one NACKed: the previous configuration keeps serving)."""
        resources = translate(ir, options=self.options.translate)
        for warning in resources.warnings:
            log.warning("data plane: %s", warning)
        try:
            versions = await self.xds.push(resources, timeout=self.options.apply_timeout_s)
        except XdsError as exc:
            self.last_error = str(exc)
            raise
        self.last_error = None
        return ApplyResult(versions=versions, warnings=resources.warnings)

    def synced_gateways(self) -> frozenset[str]:
        """``NS/NAME`` of every Gateway one of whose Envoys ACKed the current configuration."""
        return frozenset(node.info.gateway or node.info.id for node in self.xds.nodes() if node.in_sync)

    def status(self) -> dict[str, object]:
        """A JSON-able summary for the admin endpoint: versions and every connected Envoy."""
        xds = self._xds
        nack = xds.last_nack if xds else None
        return {
            "mode": "deployments",
            "xds_address": "{}:{}".format(*xds.address) if xds else None,
            "versions": xds.versions if xds else {},
            "connected": xds.connected_nodes if xds else [],
            "nodes": [{"id": n.info.id, "gateway": n.info.gateway, "pod_ip": n.info.pod_ip, "in_sync": n.in_sync,
                       "nack": n.nack} for n in (xds.nodes() if xds else [])],
            "last_error": self.last_error,
            "last_nack": None if nack is None else {"type": nack.type_url, "version": nack.version,
                                                    "reason": nack.reason},
        }

    async def stop(self) -> None:
        if self._xds is not None:
            await self._xds.stop()
            self._xds = None

    async def __aenter__(self) -> RemoteDataplane:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
