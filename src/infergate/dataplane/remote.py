"""The data plane of ``--data-plane deployments``: an xDS server for Envoys that run elsewhere.

No local Envoy: Envoy pods (``infergate envoy``, one Deployment per Gateway) connect to this
ADS server, each naming its Gateway and pod IP in its node metadata, and get that Gateway's
listeners (``xds_server.node_listeners``). ``apply(ir)`` returns once every *connected* Envoy
ACKed (none connected: at once; they get the configuration when they connect).
``synced_gateways()`` says which Gateways have at least one Envoy running the current
configuration (what ``Programmed`` reports).

Each Gateway is translated on its own (:func:`fleet_resources`): its listeners bind 0.0.0.0
on its own Envoys, so two Gateways may use the same port (one Envoy could not), and each may
have its own translation knobs (``gateway_options``: the ext_proc timeout and response body
mode of its GatewayClass's parameters).

    async with RemoteDataplane(RemoteDataplaneOptions(xds_host="0.0.0.0", xds_port=18000)) as dp:
        await dp.apply(ir)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from infergate.dataplane import ApplyResult
from infergate.dataplane.xds_server import XdsError, XdsServer
from infergate.dataplane.xds_translator import EnvoyResources, TranslateOptions, translate
from infergate.ir import DataplaneConfig, Listener

log = logging.getLogger(__name__)

__all__ = ["RemoteDataplane", "RemoteDataplaneOptions"]


@dataclass(frozen=True)
class RemoteDataplaneOptions:
    xds_host: str = "0.0.0.0"
    xds_port: int = 18000  # 0 = any free port
    apply_timeout_s: float = 15.0
    translate: TranslateOptions = field(default_factory=TranslateOptions)


def _union(*groups: tuple[dict[str, Any], ...], key: str = "name") -> tuple[dict[str, Any], ...]:
    merged: dict[str, dict[str, Any]] = {}
    for group in groups:
        for resource in group:
            merged.setdefault(str(resource[key]), resource)  # the first translation's wins
    return tuple(merged[name] for name in sorted(merged))


def fleet_resources(ir: DataplaneConfig, options: TranslateOptions,
                    gateway_options: Mapping[str, TranslateOptions] | None = None) -> EnvoyResources:
    """``ir`` translated Gateway by Gateway (each Gateway's listeners go to its own Envoys), with
    ``gateway_options["NS/NAME"]`` for that Gateway's listeners; clusters from ``options``."""
    per_gateway: dict[str, list[Listener]] = {}
    for ir_listener in ir.listeners:
        per_gateway.setdefault(f"{ir_listener.gateway_namespace}/{ir_listener.gateway_name}", []).append(ir_listener)
    if not per_gateway:
        return translate(ir, options=options)
    shared = translate(replace(ir, listeners=()), options=options)  # clusters, endpoints, secrets
    parts = [translate(replace(ir, listeners=tuple(listeners)),
                       options=(gateway_options or {}).get(gateway, options))
             for gateway, listeners in sorted(per_gateway.items())]
    everything = [shared, *parts]
    return EnvoyResources(
        listeners=_union(*(p.listeners for p in everything)),
        route_configurations=_union(*(p.route_configurations for p in everything)),
        clusters=_union(*(p.clusters for p in everything)),
        cluster_load_assignments=_union(*(p.cluster_load_assignments for p in everything), key="cluster_name"),
        secrets=_union(*(p.secrets for p in everything)),
        warnings=tuple(dict.fromkeys(w for p in everything for w in p.warnings)),
    )


class RemoteDataplane:
    """An ADS server for a fleet of Envoys; the ``Applier`` of the reconcile loop."""

    def __init__(self, options: RemoteDataplaneOptions | None = None, *,
                 on_nodes_changed: Callable[[], None] | None = None,
                 gateway_options: Callable[[], Mapping[str, TranslateOptions]] | None = None) -> None:
        """``gateway_options()``: the translation knobs of each Gateway ("NS/NAME") that has its own."""
        self.options = options or RemoteDataplaneOptions()
        self._on_nodes_changed = on_nodes_changed
        self._gateway_options = gateway_options
        self.last_ir: DataplaneConfig | None = None
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
        # Held until the first push: Envoys reconnecting to a restarted controller keep serving
        # their last configuration instead of getting an empty one.
        self._xds = XdsServer(self.options.xds_host, self.options.xds_port, require_connection=False,
                              on_nodes_changed=self._on_nodes_changed, hold_until_first_push=True,
                              isolate_listener_nacks=True)
        await self._xds.start()

    async def apply(self, ir: DataplaneConfig) -> ApplyResult:
        """Translate and deliver ``ir``; returns once every connected Envoy ACKed (``XdsRejected``
        when one NACKed: the previous configuration keeps serving)."""
        per_gateway = self._gateway_options() if self._gateway_options is not None else None
        resources = fleet_resources(ir, self.options.translate, per_gateway)
        self.last_ir = ir
        for warning in resources.warnings:
            log.warning("data plane: %s", warning)
        try:
            versions = await self.xds.push(resources, timeout=self.options.apply_timeout_s)
        except XdsError as exc:
            self.last_error = str(exc)
            raise
        self.last_error = None
        return ApplyResult(versions=versions, warnings=resources.warnings)

    async def reapply(self) -> None:
        """Translate the last IR again (a Gateway's knobs changed); errors are logged."""
        if self.last_ir is None:
            return
        try:
            await self.apply(self.last_ir)
        except Exception as exc:
            log.error("data plane: re-applying with new Gateway parameters failed: %s", exc)

    def synced_gateways(self) -> frozenset[str]:
        """``NS/NAME`` of every Gateway one of whose Envoys ACKed the current configuration."""
        return frozenset(node.info.gateway or node.info.id for node in self.xds.nodes() if node.in_sync)

    def gateway_nacks(self) -> dict[str, str]:
        """``NS/NAME`` -> why its Envoys rejected the current configuration, for each Gateway none
        of whose Envoys runs it and one of whose Envoys said why."""
        nodes = self.xds.nodes()
        synced = {node.info.gateway or node.info.id for node in nodes if node.in_sync}
        return {gateway: node.nack for node in nodes
                if node.nack is not None and (gateway := node.info.gateway or node.info.id) not in synced}

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
