"""The ``infergate gateway`` process: the controller and the data plane wired together.

The one module that imports both ``infergate.controller`` (provider -> translator -> IR,
statuses) and ``infergate.dataplane`` (IR -> xDS -> Envoy); the two packages meet only
through ``infergate.ir``. ``run_gateway(GatewayConfig(...))`` is what the CLI and the
end-to-end tests run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergate.controller.admin import AdminServer
from infergate.controller.providers import Provider
from infergate.controller.runner import Reconciler
from infergate.controller.translator import TranslatorOptions
from infergate.controller.translator.addresses import AddressAllocator, ClusterAllocator, LoopbackAllocator
from infergate.dataplane import Dataplane, DataplaneOptions

__all__ = ["GatewayConfig", "build_provider", "build_translator_options", "run_gateway"]


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
    options = build_translator_options(config)
    provider = build_provider(config)
    dp_options = DataplaneOptions(work_dir=Path(config.work_dir) if config.work_dir else None,
                                  concurrency=config.envoy_concurrency, log_level=config.envoy_log_level)
    async with Dataplane(dp_options) as dataplane:
        await provider.start()
        reconciler = Reconciler(provider, dataplane, options, debounce=config.debounce)
        admin = None
        try:
            if config.admin_port is not None:
                admin = AdminServer(reconciler, dataplane, config.admin_host, config.admin_port)
                await admin.start()
            result = await reconciler.reconcile_once()
            if on_reconciled is not None:
                on_reconciled(result, dataplane)
            if started is not None:
                started.set()
            await reconciler.run()
        finally:
            if admin is not None:
                await admin.stop()
            await provider.stop()
