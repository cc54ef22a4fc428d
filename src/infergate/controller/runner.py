"""The reconcile loop: provider snapshot -> translate -> data plane -> statuses.

Changes are debounced (a burst of watch events gives one translation). Statuses are written
only after the data plane has ACKed the configuration, so ``Programmed=True`` is true when
it is written; when the data plane rejects a configuration, Gateways are written with
``Programmed=False`` (reason ``Invalid``) and the error, and the previous configuration
keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from infergate.controller import conditions as c
from infergate.controller.ir import DataplaneConfig
from infergate.controller.providers import Provider
from infergate.controller.translator import TranslationResult, TranslatorOptions, translate

log = logging.getLogger(__name__)


class Applier(Protocol):
    """What the loop needs from ``infergate.dataplane.Dataplane``."""

    async def apply(self, ir: DataplaneConfig) -> Any: ...


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ReconcileStats:
    translations: int = 0
    applied: int = 0
    apply_errors: int = 0
    status_writes: int = 0
    last_error: str | None = None
    last_ir: DataplaneConfig | None = None
    last_result: TranslationResult | None = None


def _not_programmed(result: TranslationResult, error: str, now: str) -> TranslationResult:
    statuses = dict(result.statuses)
    for ref, status in result.statuses.items():
        if ref.kind != "Gateway":
            continue
        updated = dict(status)
        updated["conditions"] = [
            c.condition(c.PROGRAMMED, c.FALSE, c.REASON_INVALID, f"The data plane rejected the configuration: {error}",
                        int(cond.get("observedGeneration", 1)), now)
            if cond["type"] == c.PROGRAMMED else cond
            for cond in status.get("conditions", [])
        ]
        updated.pop("addresses", None)
        statuses[ref] = updated
    return replace(result, statuses=statuses)


class Reconciler:
    def __init__(self, provider: Provider, dataplane: Applier, options: TranslatorOptions, *,
                 debounce: float = 0.1, retry_after: float = 2.0) -> None:
        self.provider = provider
        self.dataplane = dataplane
        self.options = options
        self.debounce = debounce
        self.retry_after = retry_after
        self.stats = ReconcileStats()
        self.reconciled = asyncio.Event()  # set after every completed reconcile (for tests and readiness)

    async def reconcile_once(self) -> TranslationResult:
        snapshot = self.provider.snapshot()
        now = utc_now()
        result = translate(snapshot, replace(self.options, now=now))
        self.stats.translations += 1
        for warning in result.warnings:
            log.debug("%s", warning)
        to_write = result
        try:
            if result.ir != self.stats.last_ir or self.stats.last_error is not None:
                # IR values are frozen dataclasses: equal means nothing for Envoy to change
                # (e.g. a watch event for a status we just wrote).
                await self.dataplane.apply(result.ir)
                self.stats.applied += 1
            self.stats.last_error = None
            self.stats.last_ir = result.ir
        except Exception as exc:
            self.stats.apply_errors += 1
            self.stats.last_error = str(exc)
            log.error("data plane rejected the configuration: %s", exc)
            to_write = _not_programmed(result, str(exc), now)
            asyncio.get_running_loop().call_later(self.retry_after, self.provider.changed.set)
        self.stats.last_result = to_write
        try:
            self.stats.status_writes += await self.provider.write_statuses(to_write, self.options.controller_name)
        except Exception as exc:
            log.error("writing statuses failed: %s", exc)
        self.reconciled.set()
        return to_write

    async def run(self) -> None:
        """Reconcile on every change until cancelled."""
        while True:
            await self.provider.changed.wait()
            await asyncio.sleep(self.debounce)
            try:
                await self.reconcile_once()
            except Exception:
                log.exception("reconcile failed")
                await asyncio.sleep(1.0)

    async def wait_reconciled(self, timeout: float) -> None:
        self.reconciled.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reconciled.wait(), timeout)


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
        from infergate.controller.providers.file import FileProvider

        return FileProvider(config.manifests_dir, poll_interval=config.poll_interval,
                            status_file=config.status_file)
    from infergate.controller.providers.kubernetes import KubernetesProvider, load_api_client

    return KubernetesProvider(load_api_client(None if config.in_cluster else config.kubeconfig, config.kube_context))


def build_translator_options(config: GatewayConfig) -> TranslatorOptions:
    from infergate.controller.translator.addresses import (
        AddressAllocator,
        ClusterAllocator,
        LoopbackAllocator,
    )

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
    from pathlib import Path

    from infergate.dataplane import Dataplane, DataplaneOptions

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
                from infergate.controller.admin import AdminServer

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
