"""The ``infergate gateway`` process: the controller and the data plane wired together.

The one module that imports both ``infergate.controller`` (provider -> translator -> IR,
statuses) and ``infergate.dataplane`` (IR -> xDS -> Envoy); the two packages meet only
through ``infergate.ir``. ``run_gateway(GatewayConfig(...))`` is what the CLI and the
end-to-end tests run.

Two data planes (``GatewayConfig.data_plane``):

- ``process`` (default): one Envoy, this process's child, serves every Gateway
  (``infergate.dataplane.Dataplane``);
- ``deployments``: no local Envoy. The xDS server listens on ``xds_address`` for the Envoy
  pods of every Gateway (``infergate.dataplane.remote.RemoteDataplane``), and the fleet
  reconciler (``infergate.controller.fleet.provider.FleetProvider``) creates each Gateway's
  Envoy Deployment, Service and PodDisruptionBudget and reports addresses and ``Programmed``
  from the Envoys' ACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from infergate import __version__
from infergate.controller.admin import AdminServer
from infergate.controller.fleet.params import FleetParams
from infergate.controller.providers import Provider
from infergate.controller.runner import Reconciler
from infergate.controller.translator import TranslatorOptions
from infergate.controller.translator.addresses import AddressAllocator, ClusterAllocator, LoopbackAllocator
from infergate.dataplane import Dataplane, DataplaneOptions
from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.util.listening import listen

__all__ = ["DEFAULT_ENVOY_IMAGE", "GatewayConfig", "build_provider", "build_translator_options", "run_gateway"]

DEFAULT_ENVOY_IMAGE = f"ghcr.io/infergate/infergate:{__version__}"
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``infergate gateway`` needs (one process: controller + xDS server + Envoy)."""

    manifests_dir: str | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    in_cluster: bool = False
    gateway_classes: tuple[str, ...] = ()
    controller_name: str = "infergate.io/gateway-controller"
    address_mode: str = "loopback"  # or "cluster"
    address_pool: str = "127.0.2.0/24"
    external_address: str | None = None
    status_file: str | None = None
    poll_interval: float = 0.5
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None  # the gateway's own admin endpoint; None = off
    work_dir: str | None = None
    envoy_concurrency: int = 1
    envoy_log_level: str = "warning"
    debounce: float = 0.1
    # --data-plane deployments: Envoy pods per Gateway, configured over xDS from here
    data_plane: str = "process"  # or "deployments"
    xds_address: str = "0.0.0.0:18000"  # where the xDS server listens (deployments)
    xds_service: str | None = None  # "NS/NAME:PORT": the xDS Service whose clusterIP Envoys dial
    envoy_image: str = DEFAULT_ENVOY_IMAGE
    envoy_admin_port: int = 19001
    envoy_drain_seconds: float = 15.0
    fleet_resync: float = 10.0
    # deployments: only the holder of this Lease writes statuses and Envoy objects
    leader_elect: bool = False
    leader_election_namespace: str = "default"
    leader_election_id: str = "infergate-gateway-controller"
    leader_lease_s: tuple[float, float, float] = (15.0, 10.0, 2.0)  # lease duration, renew deadline, retry period


def split_host_port(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too); ValueError naming ``what`` otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what}: {value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def split_service(value: str) -> tuple[str, str, int]:
    """``NAMESPACE/NAME:PORT`` -> (namespace, name, port)."""
    ref, port = split_host_port(value, "--xds-service")
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"--xds-service: {value!r}: expected NAMESPACE/NAME:PORT")
    return namespace, name, port


def build_provider(config: GatewayConfig) -> Provider:
    if config.manifests_dir:
        from infergate.controller.providers.file import FileProvider  # only the chosen provider's deps load

        return FileProvider(config.manifests_dir, poll_interval=config.poll_interval,
                            status_file=config.status_file)
    # the Kubernetes client is loaded only when the gateway watches an API server
    from infergate.controller.providers.kubernetes import KubernetesProvider, load_api_client

    return KubernetesProvider(load_api_client(None if config.in_cluster else config.kubeconfig, config.kube_context))


def build_translator_options(config: GatewayConfig) -> TranslatorOptions:
    allocator: AddressAllocator
    if config.address_mode == "cluster":
        allocator = ClusterAllocator(config.external_address)
    else:
        allocator = LoopbackAllocator(config.address_pool)
    return TranslatorOptions(controller_name=config.controller_name,
                             extra_gateway_classes=frozenset(config.gateway_classes), addresses=allocator)


async def run_gateway(config: GatewayConfig, *, started: asyncio.Event | None = None,
                      on_reconciled: Any = None) -> None:
    """Run until cancelled: provider -> translator -> data plane, statuses written back."""
    if config.data_plane == "deployments":
        await _run_deployments(config, started=started, on_reconciled=on_reconciled)
        return
    if config.data_plane != "process":
        raise ValueError(f"--data-plane: {config.data_plane!r}: expected process or deployments")
    if config.leader_elect:
        raise ValueError("--leader-elect: only with --data-plane deployments (one process Envoy per controller)")
    options = build_translator_options(config)
    provider = build_provider(config)
    dp_options = DataplaneOptions(work_dir=Path(config.work_dir) if config.work_dir else None,
                                  concurrency=config.envoy_concurrency, log_level=config.envoy_log_level)
    async with Dataplane(dp_options) as dataplane:
        await provider.start()
        reconciler = Reconciler(provider, dataplane, options, debounce=config.debounce)
        try:
            await _reconcile_and_serve(config, reconciler, dataplane, started, on_reconciled)
        finally:
            await provider.stop()


async def _reconcile_and_serve(config: GatewayConfig, reconciler: Reconciler, dataplane: Any,
                               started: asyncio.Event | None, on_reconciled: Any) -> None:
    """The admin endpoint (when asked for), a first reconcile (``started`` set after it), then
    reconcile on every change until cancelled."""
    admin = None
    try:
        if config.admin_port is not None:
            admin = AdminServer(reconciler, dataplane, config.admin_host, config.admin_port)
            await listen("--admin-port", config.admin_port, admin.start)
        result = await reconciler.reconcile_once()
        if on_reconciled is not None:
            on_reconciled(result, dataplane)
        if started is not None:
            started.set()
        await reconciler.run()
    finally:
        if admin is not None:
            await admin.stop()


def gateway_translate_options(base: TranslateOptions, params: Mapping[str, FleetParams]
                              ) -> dict[str, TranslateOptions]:
    """The translation knobs of each Gateway whose GatewayClass parameters set some."""
    out: dict[str, TranslateOptions] = {}
    for gateway, knobs in params.items():
        options = base
        if knobs.ext_proc_timeout_s is not None:
            options = replace(options, ext_proc_message_timeout_s=knobs.ext_proc_timeout_s,
                              ext_proc_max_message_timeout_s=max(options.ext_proc_max_message_timeout_s,
                                                                 knobs.ext_proc_timeout_s))
        if knobs.response_body_mode is not None:
            options = replace(options, ext_proc_response_body_mode=knobs.response_body_mode)
        if options != base:
            out[gateway] = options
    return out


def _fleet_options(config: GatewayConfig, xds_bound: tuple[str, int]) -> Any:
    from infergate.controller.fleet.provider import FleetOptions  # deployments mode only

    xds_service: tuple[str, str] | None = None
    port = xds_bound[1]
    host: str | None = None
    if config.xds_service:
        namespace, name, port = split_service(config.xds_service)
        xds_service = (namespace, name)
    elif xds_bound[0] not in WILDCARD_HOSTS:
        host = xds_bound[0]
    else:  # listening on every address: Envoys dial this pod's own IP
        host = os.environ.get("INFERGATE_POD_IP") or os.environ.get("POD_IP") or None
    return FleetOptions(envoy_image=config.envoy_image, xds_port=port, xds_host=host, xds_service=xds_service,
                        admin_port=config.envoy_admin_port, drain_seconds=config.envoy_drain_seconds,
                        resync_s=config.fleet_resync, ready_pods_count_as_acked=config.leader_elect,
                        controller_name=config.controller_name)


async def _run_deployments(config: GatewayConfig, *, started: asyncio.Event | None, on_reconciled: Any) -> None:
    """``--data-plane deployments``: xDS server + fleet reconciler, no local Envoy."""
    # deployments mode only: the fleet reconciler and the remote data plane load here
    from infergate.controller.fleet.provider import FleetProvider
    from infergate.controller.providers.kubernetes import KubernetesProvider
    from infergate.dataplane.remote import RemoteDataplane, RemoteDataplaneOptions
    from infergate.kube.leader import LeaderElector, default_identity

    if config.manifests_dir:
        raise ValueError("--data-plane deployments: needs an API server (--kubeconfig or --in-cluster), not -f")
    host, port = split_host_port(config.xds_address, "--xds-address")
    if config.xds_service:
        split_service(config.xds_service)  # a bad value fails before anything starts
    # Listeners bind 0.0.0.0 in the IR; each Envoy pod gets them at its own pod IP.
    options = replace(build_translator_options(replace(config, address_mode="cluster")),
                      addresses=ClusterAllocator(None))
    inner = build_provider(config)
    assert isinstance(inner, KubernetesProvider)
    dp_options = RemoteDataplaneOptions(xds_host=host or "0.0.0.0", xds_port=port)
    fleet: list[FleetProvider] = []  # the provider needs the data plane's ACKs, the data plane its knobs
    dataplane = RemoteDataplane(dp_options, on_nodes_changed=inner.changed.set,
                                gateway_options=lambda: gateway_translate_options(
                                    dp_options.translate, fleet[0].params_by_gateway if fleet else {}))
    reapplies: set[asyncio.Task[None]] = set()

    def params_changed() -> None:
        task = asyncio.get_running_loop().create_task(dataplane.reapply())
        reapplies.add(task)
        task.add_done_callback(reapplies.discard)

    elector: LeaderElector | None = None
    if config.leader_elect:
        duration, deadline, retry = config.leader_lease_s
        # a new leader reconciles at once: statuses and Envoy objects are its to write now
        elector = LeaderElector(inner.client, config.leader_election_namespace, config.leader_election_id,
                                default_identity(), duration, deadline, retry, on_started_leading=inner.changed.set)
    async with dataplane:
        provider = FleetProvider(inner, inner.client, _fleet_options(config, dataplane.xds_address),
                                 dataplane.synced_gateways, on_params_changed=params_changed,
                                 gateway_nacks=dataplane.gateway_nacks,
                                 is_leader=(lambda: elector.is_leader) if elector is not None else None)
        fleet.append(provider)
        await provider.start()
        reconciler = Reconciler(provider, dataplane, options, debounce=config.debounce)
        campaign = asyncio.create_task(elector.run(), name="gateway-leader-election") if elector else None
        try:
            await _reconcile_and_serve(config, reconciler, dataplane, started, on_reconciled)
        finally:
            if campaign is not None:  # gives the Lease back, so another replica leads at once
                campaign.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await campaign
            await provider.stop()
