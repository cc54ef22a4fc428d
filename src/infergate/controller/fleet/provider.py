"""The fleet reconciler, as a provider wrapper: after each translation, before statuses are written.

``FleetProvider`` wraps the Kubernetes provider. Its ``write_statuses`` (called by the
reconcile loop once the xDS server has the new configuration) first makes every accepted
Gateway's Envoy objects match :mod:`~infergate.controller.fleet.desired` (through
:class:`~infergate.controller.fleet.applier.FleetApplier`), then rewrites the statuses
(:mod:`~infergate.controller.fleet.status`): addresses from the Envoy Service, ``Programmed``
from the ACKs of that Gateway's Envoys (``synced_gateways``, given by the data plane), a
GatewayClass with unusable parameters ``Accepted=False`` (``InvalidParameters``). With leader
election, only the leader writes (``is_leader``); every replica still translates and serves xDS.

The provider's change signal also fires every ``resync_s`` so a changed parameters ConfigMap
and an edited or deleted Envoy object are noticed (an unchanged configuration costs one GET
per object and nothing else).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from infergate.controller import conditions as c
from infergate.controller.fleet.applier import FleetApplier
from infergate.controller.fleet.desired import FleetSettings, GatewayInfo, desired_objects, fleet_name
from infergate.controller.fleet.params import (
    DEFAULT_PARAMS,
    FleetParams,
    ParamsError,
    parameters_ref_error,
    parse_params,
)
from infergate.controller.fleet.status import (
    fleet_gateway_status,
    invalid_parameters_status,
    service_addresses,
)
from infergate.controller.providers import Provider
from infergate.controller.resources import CORE_GROUP, GATEWAY_GROUP
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator.options import TranslationResult
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.errors import KubeError
from infergate.util.clock import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetOptions:
    """The fleet's command-line settings (``infergate gateway --data-plane deployments``)."""

    envoy_image: str
    xds_port: int  # the port Envoys dial (the xDS Service's port, else the server's own)
    xds_host: str | None = None  # the address Envoys dial when there is no xds_service
    xds_service: tuple[str, str] | None = None  # (namespace, name): Envoys dial its clusterIP
    admin_port: int = 19001
    drain_seconds: float = 15.0
    image_pull_policy: str | None = None
    resync_s: float = 10.0
    # Several controller replicas (leader election): an Envoy may be connected to another
    # replica, whose ACKs this one does not see; a Ready Envoy pod of the Gateway's current
    # Deployment (Envoy is Ready once it has its configuration) counts as ACKed then.
    ready_pods_count_as_acked: bool = False
    # ... and until its Deployment has one, it is looked at again after this long, then 1.5 times
    # as long each time, up to resync_s (nothing tells the leader when it becomes Ready).
    ready_recheck_s: float = 0.5
    controller_name: str = "infergate.io/gateway-controller"  # marks (and limits pruning to) our objects
    # After a (re)start, Envoys take a few seconds to reconnect: a Gateway already Programmed at
    # its current generation stays so for this long unless one of its Envoys rejects something.
    startup_grace_s: float = 15.0


@dataclass(frozen=True)
class ClassParams:
    params: FleetParams
    error: str | None  # why the GatewayClass's parametersRef is not usable


class FleetProvider:
    """A :class:`Provider` that also runs the per-Gateway Envoy fleets."""

    def __init__(self, inner: Provider, client: KubeClient, options: FleetOptions,
                 synced_gateways: Callable[[], frozenset[str]], *,
                 is_leader: Callable[[], bool] | None = None,
                 on_params_changed: Callable[[], None] | None = None,
                 gateway_nacks: Callable[[], Mapping[str, str]] | None = None) -> None:
        """``on_params_changed()`` is called when a Gateway's knobs (``params_by_gateway``) change,
        so the data plane translates again with them."""
        self.inner = inner
        self.changed = inner.changed  # one change signal: the inner provider's watches set it
        self.client = client
        self.options = options
        self.applier = FleetApplier(client)
        self._synced_gateways = synced_gateways
        self._is_leader = is_leader or (lambda: True)
        self._on_params_changed = on_params_changed
        self._gateway_nacks = gateway_nacks or dict
        self._snapshot: Snapshot | None = None
        self._resync: asyncio.Task[None] | None = None
        self.params_by_gateway: dict[str, FleetParams] = {}  # "NS/NAME" -> its knobs (last reconcile)
        self.last_error: str | None = None
        self._kept: set[tuple[str, str, str]] = set()
        # (kind, namespace, name) -> (what was ensured, when, the stored object then)
        self._ensured: dict[tuple[str, str, str], tuple[dict[str, Any], float, Mapping[str, Any] | None]] = {}
        self._pruned_at = float("-inf")
        self._started_at = float("-inf")
        # node id -> (delay, when) of the next look at a Gateway waiting for a Ready Envoy pod
        self._rechecks: dict[str, tuple[float, float]] = {}
        self._recheck_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._started_at = asyncio.get_running_loop().time()
        await self.inner.start()
        self._resync = asyncio.create_task(self._tick(), name="fleet-resync")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.options.resync_s)
            self.inner.changed.set()

    def snapshot(self) -> Snapshot:
        self._snapshot = self.inner.snapshot()
        return self._snapshot

    async def stop(self) -> None:
        if self._recheck_timer is not None:
            self._recheck_timer.cancel()
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        await self.inner.stop()

    # ------------------------------------------------------------------ the fleet

    def xds_host(self, snapshot: Snapshot) -> str | None:
        """The address Envoys dial: the xDS Service's clusterIP, else the configured host."""
        if self.options.xds_service is None:
            return self.options.xds_host
        namespace, name = self.options.xds_service
        service = snapshot.get(CORE_GROUP, "Service", namespace, name)
        cluster_ip = (service.spec.get("clusterIP") if service is not None else None) or ""
        return cluster_ip if cluster_ip and cluster_ip != "None" else None

    async def class_params(self, ref: Any) -> ClassParams:
        """The knobs of a GatewayClass's ``parametersRef`` (defaults without one)."""
        problem = parameters_ref_error(ref)
        if problem is not None:
            return ClassParams(DEFAULT_PARAMS, problem)
        if not ref:
            return ClassParams(DEFAULT_PARAMS, None)
        namespace, name = str(ref["namespace"]), str(ref["name"])
        config_map = await self.client.get(kinds.CONFIGMAPS.path(namespace, name))
        if config_map is None:
            return ClassParams(DEFAULT_PARAMS, f"spec.parametersRef: ConfigMap {namespace}/{name} not found")
        try:
            return ClassParams(parse_params(config_map.get("data")), None)
        except ParamsError as exc:
            return ClassParams(DEFAULT_PARAMS, f"ConfigMap {namespace}/{name}: data.{exc}")

    async def write_statuses(self, result: TranslationResult, controller_name: str) -> int:
        """The leader: Envoy objects, then statuses. A follower writes nothing but still reads the
        GatewayClass parameters, since the Envoys connected to it need their knobs too."""
        leader = self._is_leader()
        snapshot = self._snapshot if self._snapshot is not None else self.inner.snapshot()
        try:
            result = await self._reconcile(result, snapshot, write=leader)
            self.last_error = None
        except KubeError as exc:  # the API server is away: statuses as translated, try again later
            self.last_error = str(exc)
            log.error("fleet: %s", exc)
        if not leader:
            return 0
        return await self.inner.write_statuses(result, controller_name)

    async def _ensure(self, desired: dict[str, Any], *, fresh: bool = False) -> tuple[str, Mapping[str, Any] | None]:
        """``applier.ensure``, at most once per ``resync_s`` for an object whose desired state did
        not change (a reconcile per Envoy ACK must not become a GET per object each time), unless
        ``fresh``."""
        key = (desired["kind"], desired["metadata"]["namespace"], desired["metadata"]["name"])
        now = asyncio.get_running_loop().time()
        cached = self._ensured.get(key)
        if not fresh and cached is not None and cached[0] == desired and now - cached[1] < self.options.resync_s:
            return "unchanged", cached[2]
        outcome, stored = await self.applier.ensure(desired)
        self._ensured[key] = (desired, now, stored if outcome == "unchanged" else None)
        return outcome, stored

    async def _reconcile(self, result: TranslationResult, snapshot: Snapshot, *, write: bool = True
                         ) -> TranslationResult:
        now = utc_now()
        statuses = dict(result.statuses)
        by_class: dict[str, ClassParams] = {}
        for ref, status in result.statuses.items():
            if ref.kind != "GatewayClass":
                continue
            gwc = snapshot.get(GATEWAY_GROUP, "GatewayClass", "", ref.name)
            if gwc is None:
                continue
            by_class[ref.name] = params = await self.class_params(gwc.spec.get("parametersRef"))
            if params.error is not None:
                statuses[ref] = invalid_parameters_status(status, params.error, gwc.generation, now)
        xds_host = self.xds_host(snapshot)
        if xds_host is None:
            log.warning("fleet: the xDS Service %s has no clusterIP yet; Envoy objects wait",
                        "/".join(self.options.xds_service or ()))
        settings = FleetSettings(envoy_image=self.options.envoy_image, xds_host=xds_host or "",
                                 xds_port=self.options.xds_port, admin_port=self.options.admin_port,
                                 drain_seconds=self.options.drain_seconds,
                                 image_pull_policy=self.options.image_pull_policy,
                                 controller_name=self.options.controller_name)
        synced = self._synced_gateways()
        nacks = self._gateway_nacks()
        keep: set[tuple[str, str, str]] = set()
        params_by_gateway: dict[str, FleetParams] = {}
        for ref, status in result.statuses.items():
            if ref.kind != "Gateway":
                continue
            gateway = snapshot.get(GATEWAY_GROUP, "Gateway", ref.namespace, ref.name)
            if gateway is None:
                continue
            info = GatewayInfo.of(gateway.body)
            class_params = by_class.get(str(gateway.spec.get("gatewayClassName")), ClassParams(DEFAULT_PARAMS, None))
            accepted = c.find(status.get("conditions") or (), c.ACCEPTED)
            name = fleet_name(ref.name)
            if class_params.error is not None:
                # keep what runs (a typo in the parameters must not take a Gateway down)
                keep.update((k.kind, ref.namespace, name) for k in (kinds.DEPLOYMENTS, kinds.SERVICES,
                                                                    kinds.POD_DISRUPTION_BUDGETS))
            ready_elsewhere = False
            if class_params.error is None and accepted is not None and accepted.get("status") == c.TRUE \
                    and info.ports and xds_host:
                params_by_gateway[info.node_id] = class_params.params
                for obj in desired_objects(info, class_params.params, settings):
                    if obj is not None and write:
                        outcome, stored = await self._ensure(
                            obj, fresh=obj["kind"] == "Deployment" and self._recheck_due(info.node_id))
                        keep.add((obj["kind"], ref.namespace, name))
                        if obj["kind"] == "Deployment" and outcome == "unchanged" and stored is not None:
                            ready_elsewhere = self.options.ready_pods_count_as_acked and deployment_ready(stored)
            self._note_pending(info.node_id, write and self.options.ready_pods_count_as_acked
                               and info.node_id in params_by_gateway and info.node_id not in synced
                               and not ready_elsewhere)
            in_grace = asyncio.get_running_loop().time() - self._started_at < self.options.startup_grace_s
            still_programmed = (in_grace and info.node_id not in nacks
                                and programmed_at(gateway.body, gateway.generation))
            service = snapshot.get(CORE_GROUP, "Service", ref.namespace, name)
            statuses[ref] = fleet_gateway_status(
                status, addresses=service_addresses(service.body if service is not None else None),
                synced=info.node_id in synced or ready_elsewhere or still_programmed, params_error=class_params.error,
                generation=gateway.generation, now=now, nack=nacks.get(info.node_id))
        for node_id in [n for n in self._rechecks if n not in params_by_gateway]:
            del self._rechecks[node_id]
        self._schedule_recheck()
        if params_by_gateway != self.params_by_gateway:
            self.params_by_gateway = params_by_gateway
            if self._on_params_changed is not None:
                self._on_params_changed()
        loop = asyncio.get_running_loop()
        if write and xds_host and (keep != self._kept or loop.time() - self._pruned_at >= self.options.resync_s):
            self._ensured = {k: v for k, v in self._ensured.items() if k in keep}
            await self.applier.prune(keep, self.options.controller_name)  # Gateways no longer ours (GC removes deleted Gateways' own)
            self._kept, self._pruned_at = keep, loop.time()
        return replace(result, statuses=statuses)


    def _recheck_due(self, node_id: str) -> bool:
        """Whether a Gateway waiting for a Ready Envoy pod is to be looked at again now."""
        pending = self._rechecks.get(node_id)
        return pending is not None and asyncio.get_running_loop().time() >= pending[1]

    def _note_pending(self, node_id: str, pending: bool) -> None:
        """A Gateway still waits for a Ready Envoy pod (none ACKed here): its next look, after a
        delay that grows by half each time it is due, up to ``resync_s``."""
        if not pending:
            self._rechecks.pop(node_id, None)
            return
        now = asyncio.get_running_loop().time()
        previous = self._rechecks.get(node_id)
        if previous is None:
            delay = self.options.ready_recheck_s
        elif now >= previous[1]:
            delay = min(previous[0] * 1.5, self.options.resync_s)
        else:
            return
        self._rechecks[node_id] = (delay, now + delay)

    def _schedule_recheck(self) -> None:
        """A reconcile when the earliest look is due (the resync tick does the rest)."""
        if not self._rechecks:
            return
        due = min(when for _, when in self._rechecks.values())
        timer = self._recheck_timer
        if timer is not None and not timer.cancelled() and timer.when() <= due:
            return
        if timer is not None:
            timer.cancel()
        self._recheck_timer = asyncio.get_running_loop().call_at(due, self._recheck_now)

    def _recheck_now(self) -> None:
        self._recheck_timer = None
        self.changed.set()


def deployment_ready(deployment: Mapping[str, Any]) -> bool:
    """At least one Ready pod of the Deployment's current template (its status is up to date)."""
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    current = status.get("observedGeneration") == meta.get("generation")
    return bool(current and int(status.get("updatedReplicas") or 0) >= 1 and int(status.get("readyReplicas") or 0) >= 1)


def programmed_at(gateway: Mapping[str, Any], generation: int) -> bool:
    """Whether the stored status says Programmed=True for this generation."""
    cond = c.find((gateway.get("status") or {}).get("conditions") or (), c.PROGRAMMED)
    return cond is not None and cond.get("status") == c.TRUE and cond.get("observedGeneration") == generation
