"""The reconcile loop: provider snapshot -> translate -> data plane -> statuses.

Changes are debounced (a burst of watch events gives one translation). Statuses are written
only after the data plane has ACKed the configuration, so ``Programmed=True`` is true when
it is written; when the data plane rejects a configuration, Gateways are written with
``Programmed=False`` (reason ``Invalid``) and the error, and the previous configuration
keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any, Protocol

from infergate.controller import conditions as c
from infergate.controller.providers import Provider
from infergate.controller.translator import TranslationResult, TranslatorOptions, translate
from infergate.ir import DataplaneConfig
from infergate.util.clock import utc_now

log = logging.getLogger(__name__)


class Applier(Protocol):
    """What the loop needs from ``infergate.dataplane.Dataplane``."""

    async def apply(self, ir: DataplaneConfig) -> Any: ...


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
