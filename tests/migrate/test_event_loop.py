"""The migration shares its event loop with the downtime monitor (and, in the end-to-end tests, with
the load): a slow cluster or helm call must not stall that loop, or the monitor measures the
migration's own pauses as downtime (issue 11, finding 6).

A distant API server or a slow chart pull is stood in for by a wrapper that delays each call of
the real cluster (the embedded API server) or the real helm binary by blocking its thread, as a
synchronous client waiting on the network does."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from infergate.migrate.cluster import ClusterTarget, KubeCluster
from infergate.migrate.discover import plan_from_cluster
from infergate.migrate.helm import Helm
from infergate.migrate.plan import STEP_TYPES, Gates, PlanOptions
from infergate.migrate.resources import PREVIEW_POOLS
from infergate.migrate.runner import STEP_HANDLERS, Migrator, RunOptions

from ..support.clitool import CliTool

TESTDATA = Path(__file__).resolve().parent / "testdata"
CHARTS = TESTDATA / "charts"
DELAY_S = 0.6  # each cluster/helm call blocks its thread this long
TICK_S = 0.02  # the concurrent coroutine's interval (the downtime monitor's is 0.1 s)
# A tick may be late (2 shared cores, the API server's thread in this process holding the GIL for
# a moment), never by a whole call: a single call made on the loop stalls it DELAY_S.
MAX_GAP_S = 0.5
T = TypeVar("T")


class Slow:
    """``inner`` (a cluster or a Helm) whose every method call first blocks for ``delay_s``."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self._inner = inner
        self._delay_s = delay_s
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def slow(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            time.sleep(self._delay_s)
            return attr(*args, **kwargs)

        return slow


async def with_ticker(work: Callable[[], Awaitable[T]]) -> tuple[T, float, int]:
    """Run ``work`` while a coroutine on the same loop ticks every TICK_S; the result, the largest
    gap between two ticks and the number of ticks."""
    ticks = [time.monotonic()]

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(TICK_S)

    ticker = asyncio.create_task(tick())
    try:
        result = await work()
    finally:
        ticker.cancel()
    ticks.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    return result, max(gaps), len(ticks)


async def test_slow_cluster_calls_do_not_stall_the_loop(cluster: KubeCluster, preview_stack: str,
                                                       status_writer: Any) -> None:
    ns = preview_stack
    plan = plan_from_cluster(cluster, ns, None, PlanOptions(path="zero-downtime", gates=Gates(probes=0)))
    slow = Slow(cluster, DELAY_S)
    options = RunOptions(stop_after="wait-ready", ready_timeout_s=20.0, poll_s=0.1,
                         gateway_url="http://127.0.0.1:9")
    result, gap, ticks = await with_ticker(lambda: Migrator(slow, None, options).run(plan))
    assert result.exit_code == 0, (result.message, result.steps)
    assert [s["step"] for s in result.steps][-1] == "wait-ready"
    assert slow.calls >= 5, slow.calls
    assert gap < MAX_GAP_S, f"the loop stalled {gap:.2f} s ({slow.calls} calls of {DELAY_S} s, {ticks} ticks)"


async def test_slow_helm_calls_do_not_stall_the_loop(cluster: KubeCluster, helm: CliTool, namespace: str,
                                                    kubectl: CliTool, helm_bin: str, apiserver: Any,
                                                    status_writers: Any) -> None:
    ns = namespace
    helm.run("install", "llama-preview", str(CHARTS / "preview-pool"), "-n", ns)
    kubectl.run("apply", "-n", ns, "-f", str(TESTDATA / "route-to-helm-pool.yaml"))
    status_writers(ns)
    plan = plan_from_cluster(cluster, ns, None, PlanOptions(
        path="simple", chart=str(CHARTS / "inferencepool-v1"), chart_version=None, gates=Gates(probes=0)))
    assert plan.pools[0].install == "helm" and plan.pools[0].preview_release == "llama-preview"
    slow = Slow(Helm(helm_bin, ClusterTarget(str(apiserver.kubeconfig_path))), DELAY_S)
    options = RunOptions(stop_after="remove-preview", ready_timeout_s=20.0, poll_s=0.1)
    result, gap, ticks = await with_ticker(lambda: Migrator(cluster, slow, options).run(plan))  # type: ignore[arg-type]
    assert result.exit_code == 0, (result.message, result.steps)
    assert "helm uninstall llama-preview" in result.steps[-1]["detail"]
    assert cluster.get(PREVIEW_POOLS, ns, "llama-preview") is None
    assert slow.calls >= 4, slow.calls
    assert gap < MAX_GAP_S, f"the loop stalled {gap:.2f} s ({slow.calls} helm calls of {DELAY_S} s, {ticks} ticks)"


def test_every_step_kind_of_the_plan_has_a_handler() -> None:
    assert set(STEP_HANDLERS) == set(STEP_TYPES.values())
