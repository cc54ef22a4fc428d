"""The reconcile loop: statuses only after the data plane ACKs, Programmed=False on rejection,
no re-apply of an unchanged IR, retry after a rejection."""

from __future__ import annotations

import asyncio
from pathlib import Path

from infergate.controller.providers.file import FileProvider
from infergate.controller.resources import ObjectRef
from infergate.controller.runner import Reconciler
from infergate.controller.translator import TranslatorOptions
from infergate.ir import DataplaneConfig

TESTDATA = Path(__file__).parent / "testdata"
GW = ObjectRef("gateway.networking.k8s.io", "Gateway", "default", "inference-gateway")


class FlakyDataplane:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.applied: list[DataplaneConfig] = []
        self.attempts = 0

    async def apply(self, ir: DataplaneConfig) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("NACK: listener address in use")
        self.applied.append(ir)


def provider(tmp_path: Path) -> FileProvider:
    (tmp_path / "m.yaml").write_text((TESTDATA / "model_name_routing.in.yaml").read_text())
    p = FileProvider(tmp_path)
    p.scan()
    return p


async def test_rejection_writes_programmed_false_then_retries_and_recovers(tmp_path: Path) -> None:
    files = provider(tmp_path)
    dataplane = FlakyDataplane(failures=1)
    reconciler = Reconciler(files, dataplane, TranslatorOptions(), debounce=0.01, retry_after=0.05)
    await reconciler.reconcile_once()
    status = files.statuses()[GW]
    programmed = next(c for c in status["conditions"] if c["type"] == "Programmed")
    assert (programmed["status"], programmed["reason"]) == ("False", "Invalid")
    assert "NACK: listener address in use" in programmed["message"]
    assert "addresses" not in status
    assert reconciler.stats.last_error is not None
    task = asyncio.create_task(reconciler.run())  # the retry is scheduled on the provider's change event
    try:
        for _ in range(500):  # bounded at ~10 s
            if dataplane.applied:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert len(dataplane.applied) == 1 and reconciler.stats.last_error is None
    programmed = next(c for c in files.statuses()[GW]["conditions"] if c["type"] == "Programmed")
    assert programmed["status"] == "True"
    assert files.statuses()[GW]["addresses"][0]["value"] == dataplane.applied[0].listeners[0].address


async def test_unchanged_ir_is_not_applied_again(tmp_path: Path) -> None:
    files = provider(tmp_path)
    dataplane = FlakyDataplane(failures=0)
    reconciler = Reconciler(files, dataplane, TranslatorOptions())
    await reconciler.reconcile_once()
    await reconciler.reconcile_once()  # e.g. after a watch event for the status just written
    assert dataplane.attempts == 1
    assert reconciler.stats.translations == 2
